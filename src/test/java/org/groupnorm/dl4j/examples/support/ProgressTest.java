package org.groupnorm.dl4j.examples.support;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The experiment ETA predicts later runs from a fixed-plus-per-example cost per step, and says when it is a bound. */
class ProgressTest {

    /** A clock the test moves: seconds of simulated training. */
    private long nanos;

    /** Simulates steps [from, to] of a run whose steps cost {@code fixed + perExample * batch} seconds. */
    private void train(Progress progress, int batch, int from, int to, double fixed, double perExample) {
        for (int step = from; step <= to; step++) {
            nanos += (long) ((fixed + perExample * batch) * 1e9);
            progress.update(1, 1, (long) step * batch, 1.0);
        }
    }

    @Test
    void predictsLaterRunsFromTheStepCostModel() {
        // Steps cost 0.1 s + 0.01 s per example: batch 2 -> 0.12 s, batch 8 -> 0.18 s, batch 32 -> 0.42 s.
        List<Progress.PlannedRun> plan = List.of(new Progress.PlannedRun(2, 200), new Progress.PlannedRun(8, 800),
                new Progress.PlannedRun(32, 3200));
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Progress progress = new Progress(new PrintStream(printed, true, StandardCharsets.UTF_8), 1e9, plan,
                () -> nanos);

        progress.startRun("batch 2");
        train(progress, 2, 1, 50, 0.1, 0.01);
        // Only batch 2 measured: 0.06 s per example assumed for all: 100 x 8 x 0.06 + 100 x 32 x 0.06 = 240 s, an
        // upper bound of the true 100 x 0.18 + 100 x 0.42 = 60 s.
        Progress.Estimate early = progress.remainingRuns(2, 50, 6.0);
        assertEquals(240, early.seconds(), 1e-6);
        assertTrue(early.upperBound());

        train(progress, 2, 51, 100, 0.1, 0.01);
        progress.startRun("batch 8");
        train(progress, 8, 1, 40, 0.1, 0.01);
        // Two batch sizes measured: the model is exact, so the last run's 100 steps take 42 s.
        Progress.Estimate later = progress.remainingRuns(8, 40, 40 * 0.18);
        assertEquals(42, later.seconds(), 1e-6);
        assertFalse(later.upperBound());
    }

    @Test
    void printsTheEstimateWithItsKind() {
        List<Progress.PlannedRun> plan = List.of(new Progress.PlannedRun(2, 20), new Progress.PlannedRun(4, 40));
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Progress progress = new Progress(new PrintStream(printed, true, StandardCharsets.UTF_8), 0.5, plan,
                () -> nanos);
        progress.startRun("GN batch 2");
        train(progress, 2, 1, 10, 0.1, 0.01);
        String text = printed.toString(StandardCharsets.UTF_8);
        assertTrue(text.contains("[GN batch 2]") && text.contains("experiment ETA <="), text);
    }
}
