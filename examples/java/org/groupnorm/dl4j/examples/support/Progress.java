package org.groupnorm.dl4j.examples.support;

import java.io.PrintStream;
import java.util.Locale;

/**
 * Progress lines at a steady interval while the experiment trains: which run, epoch, throughput, loss, and time left
 * for the run and for the whole experiment. The whole-experiment estimate divides the work left (in training
 * examples) by the throughput so far, so it is pessimistic while small batches (the slowest) run.
 */
public final class Progress {

    private final PrintStream out;
    private final long intervalNanos;
    private final long totalExamples;
    private final long experimentStart = System.nanoTime();
    /** Training examples of the runs already finished. */
    private long examplesBeforeRun;
    private long runExamples;
    private long runExamplesDone;
    private long runStart;
    private long lastPrint;
    private String run = "";

    /** @param totalExamples training examples summed over every run and epoch of the experiment */
    public Progress(PrintStream out, double intervalSeconds, long totalExamples) {
        this.out = out;
        this.intervalNanos = (long) (intervalSeconds * 1e9);
        this.totalExamples = totalExamples;
    }

    /** A new run that will train {@code examples} examples in all. */
    public void startRun(String name, long examples) {
        examplesBeforeRun += runExamplesDone;
        runExamplesDone = 0;
        run = name;
        runExamples = examples;
        runStart = System.nanoTime();
        lastPrint = runStart;
    }

    /** Called after each minibatch; prints when the interval has passed. */
    public void update(int epoch, int epochs, long examplesDoneInRun, double loss) {
        runExamplesDone = examplesDoneInRun;
        long now = System.nanoTime();
        if (now - lastPrint < intervalNanos) {
            return;
        }
        lastPrint = now;
        double runSeconds = (now - runStart) / 1e9;
        double rate = examplesDoneInRun / Math.max(runSeconds, 1e-9);
        double runLeft = (runExamples - examplesDoneInRun) / Math.max(rate, 1e-9);
        long allDone = examplesBeforeRun + examplesDoneInRun;
        double allSeconds = (now - experimentStart) / 1e9;
        double allLeft = (totalExamples - allDone) * allSeconds / Math.max(allDone, 1);
        out.println(String.format(Locale.ROOT, "  [%s] epoch %d/%d  %3.0f%%  %6.0f examples/s  loss %.4f  "
                        + "run ETA %s  experiment ETA ~%s", run, epoch, epochs, 100.0 * examplesDoneInRun / runExamples,
                rate, loss, clock(runLeft), clock(allLeft)));
    }

    static String clock(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }
}
