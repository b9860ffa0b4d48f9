package org.groupnorm.dl4j.kernel;

import java.util.Arrays;
import java.util.stream.IntStream;

/**
 * Which positions of each example a call normalizes: every one, or those its mask marks present (any value but 0),
 * as runs of consecutive positions. The float32 paths copy an example's present positions side by side
 * ({@link StagedArray}), compute there exactly as on an example of {@link #count} positions, and clear the padded
 * positions of the output and the input gradient: a padded value is never read, whatever it holds (NaN too).
 */
final class Presence {

    private final int positions;
    /** Example n's runs are runs [firstRun[n], firstRun[n + 1]). */
    private final int[] firstRun;
    private final int[] runStart;
    private final int[] runLength;
    private final boolean[] runPresent;
    private final int[] count;

    private Presence(int positions, int[] firstRun, int[] runStart, int[] runLength, boolean[] runPresent,
                     int[] count) {
        this.positions = positions;
        this.firstRun = firstRun;
        this.runStart = runStart;
        this.runLength = runLength;
        this.runPresent = runPresent;
        this.count = count;
    }

    /**
     * The runs of {@code masks} ([examples * positions] in c order, 0 for padded), or every position when it is
     * null.
     */
    static Presence of(double[] masks, int examples, int positions) {
        if (masks == null) {   // one run per example, found without a pass over the positions (every call has this)
            int[] lengths = new int[examples];
            boolean[] present = new boolean[examples];
            Arrays.fill(lengths, positions);
            Arrays.fill(present, true);
            return new Presence(positions, IntStream.rangeClosed(0, examples).toArray(), new int[examples], lengths,
                    present, lengths.clone());
        }
        int[] firstRun = new int[examples + 1];
        int runs = 0;
        for (int n = 0; n < examples; n++) {
            firstRun[n] = runs;
            runs++;
            for (int s = 1; s < positions; s++) {
                runs += present(masks, n, positions, s) != present(masks, n, positions, s - 1) ? 1 : 0;
            }
        }
        firstRun[examples] = runs;
        int[] runStart = new int[runs];
        int[] runLength = new int[runs];
        boolean[] runPresent = new boolean[runs];
        int[] count = new int[examples];
        for (int n = 0; n < examples; n++) {
            int run = firstRun[n] - 1;
            for (int s = 0; s < positions; s++) {
                boolean present = present(masks, n, positions, s);
                if (s == 0 || present != runPresent[run]) {
                    run++;
                    runStart[run] = s;
                    runPresent[run] = present;
                }
                runLength[run]++;
                count[n] += present ? 1 : 0;
            }
        }
        return new Presence(positions, firstRun, runStart, runLength, runPresent, count);
    }

    private static boolean present(double[] masks, int n, int positions, int s) {
        return masks[n * positions + s] != 0;
    }

    /** Whether no example has a padded position. */
    boolean isComplete() {
        for (int n = 0; n < count.length; n++) {
            if (!isComplete(n)) {
                return false;
            }
        }
        return true;
    }

    /** Whether example {@code n} has no padded position. */
    boolean isComplete(int n) {
        return count[n] == positions;
    }

    /** How many positions of example {@code n} are present. */
    int count(int n) {
        return count[n];
    }

    /** Runs {@code body} on every run of present positions of example {@code n}, in order. */
    void forEachPresent(int n, PresentRun body) {
        int compacted = 0;
        for (int run = firstRun[n]; run < firstRun[n + 1]; run++) {
            if (runPresent[run]) {
                body.run(runStart[run], runLength[run], compacted);
                compacted += runLength[run];
            }
        }
    }

    /** Runs {@code body} on every run of padded positions of example {@code n}. */
    void forEachPadded(int n, PaddedRun body) {
        for (int run = firstRun[n]; run < firstRun[n + 1]; run++) {
            if (!runPresent[run]) {
                body.run(runStart[run], runLength[run]);
            }
        }
    }

    /** Positions [position, position + length), which are compacted positions [compacted, compacted + length). */
    interface PresentRun {
        void run(int position, int length, int compacted);
    }

    /** Padded positions [position, position + length). */
    interface PaddedRun {
        void run(int position, int length);
    }
}
