package org.groupnorm.dl4j.examples.support;

import java.io.PrintStream;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.LongSupplier;

/**
 * Progress lines at a steady interval while the experiment trains: which run, epoch, throughput, loss, and time left
 * for the run and for the whole experiment.
 *
 * <p>The whole-experiment estimate predicts each run still to come from the time per training step measured so far,
 * modelled as {@code a + b * batchSize} (a fixed cost per step plus a cost per example) and fitted once two batch sizes
 * have been measured. Until then only the time per example of the one batch size measured is known; assuming it for
 * larger batches over-estimates them (they share the fixed cost over more examples), so the estimate is then printed
 * as an upper bound, "&lt;=".
 */
public final class Progress {

    /** One run of the experiment as planned: its batch size and how many training examples it will see. */
    public record PlannedRun(int batchSize, long examples) {
        long steps() {
            return examples / batchSize;
        }
    }

    private final PrintStream out;
    private final long intervalNanos;
    private final List<PlannedRun> plan;
    private final LongSupplier clock;
    /** Per batch size: training steps and seconds of the finished runs. */
    private final Map<Integer, double[]> measured = new TreeMap<>();
    private int runIndex = -1;
    private long runExamplesDone;
    private long runStart;
    private long lastPrint;
    private String run = "";

    /** @param plan every run of the experiment, in the order they will run */
    public Progress(PrintStream out, double intervalSeconds, List<PlannedRun> plan) {
        this(out, intervalSeconds, plan, System::nanoTime);
    }

    Progress(PrintStream out, double intervalSeconds, List<PlannedRun> plan, LongSupplier clock) {
        this.out = out;
        this.intervalNanos = (long) (intervalSeconds * 1e9);
        this.plan = List.copyOf(plan);
        this.clock = clock;
    }

    /** The next run of the plan starts. */
    public void startRun(String name) {
        finishRun();
        runIndex++;
        runExamplesDone = 0;
        run = name;
        runStart = clock.getAsLong();
        lastPrint = runStart;
    }

    /** Called after each minibatch; prints when the interval has passed. */
    public void update(int epoch, int epochs, long examplesDoneInRun, double loss) {
        runExamplesDone = examplesDoneInRun;
        long now = clock.getAsLong();
        if (now - lastPrint < intervalNanos) {
            return;
        }
        lastPrint = now;
        PlannedRun current = plan.get(runIndex);
        double runSeconds = (now - runStart) / 1e9;
        double rate = examplesDoneInRun / Math.max(runSeconds, 1e-9);
        double runLeft = (current.examples() - examplesDoneInRun) / Math.max(rate, 1e-9);
        Estimate rest = remainingRuns(current.batchSize(), examplesDoneInRun / (double) current.batchSize(),
                runSeconds);
        out.println(String.format(Locale.ROOT, "  [%s] epoch %d/%d  %3.0f%%  %6.0f examples/s  loss %.4f  "
                        + "run ETA %s  experiment ETA %s%s", run, epoch, epochs,
                100.0 * examplesDoneInRun / current.examples(), rate, loss, clock(runLeft),
                rest.upperBound() ? "<=" : "~", clock(runLeft + rest.seconds())));
    }

    /** Seconds the runs after the current one will take, predicted from every step measured so far. */
    Estimate remainingRuns(int currentBatch, double currentSteps, double currentSeconds) {
        Map<Integer, double[]> observed = new TreeMap<>();
        measured.forEach((batch, stepsSeconds) -> observed.put(batch, stepsSeconds.clone()));
        observed.merge(currentBatch, new double[]{currentSteps, currentSeconds},
                (a, b) -> new double[]{a[0] + b[0], a[1] + b[1]});
        StepModel model = StepModel.fit(observed);
        double seconds = 0;
        boolean upperBound = model.perExampleOnly();
        for (PlannedRun next : plan.subList(runIndex + 1, plan.size())) {
            seconds += next.steps() * model.stepSeconds(next.batchSize());
            upperBound &= next.batchSize() >= currentBatch;
        }
        return new Estimate(seconds, upperBound && runIndex + 1 < plan.size());
    }

    private void finishRun() {
        if (runIndex >= 0 && runExamplesDone > 0) {
            double seconds = (clock.getAsLong() - runStart) / 1e9;
            int batch = plan.get(runIndex).batchSize();
            measured.merge(batch, new double[]{runExamplesDone / (double) batch, seconds},
                    (a, b) -> new double[]{a[0] + b[0], a[1] + b[1]});
        }
    }

    record Estimate(double seconds, boolean upperBound) {
    }

    /** Seconds per training step as {@code fixed + perExample * batchSize}. */
    private record StepModel(double fixed, double perExample, boolean perExampleOnly) {

        /** Least squares over the measured batch sizes (steps-weighted means); one size: time per example only. */
        static StepModel fit(Map<Integer, double[]> observed) {
            if (observed.size() == 1) {
                Map.Entry<Integer, double[]> only = observed.entrySet().iterator().next();
                double perStep = only.getValue()[1] / Math.max(only.getValue()[0], 1e-9);
                return new StepModel(0, perStep / only.getKey(), true);
            }
            double n = observed.size();
            double meanB = 0;
            double meanT = 0;
            for (Map.Entry<Integer, double[]> e : observed.entrySet()) {
                meanB += e.getKey() / n;
                meanT += e.getValue()[1] / Math.max(e.getValue()[0], 1e-9) / n;
            }
            double covariance = 0;
            double variance = 0;
            for (Map.Entry<Integer, double[]> e : observed.entrySet()) {
                double perStep = e.getValue()[1] / Math.max(e.getValue()[0], 1e-9);
                covariance += (e.getKey() - meanB) * (perStep - meanT);
                variance += (e.getKey() - meanB) * (e.getKey() - meanB);
            }
            double perExample = Math.max(0, covariance / variance);
            return new StepModel(Math.max(0, meanT - perExample * meanB), perExample, false);
        }

        double stepSeconds(int batchSize) {
            return fixed + perExample * batchSize;
        }
    }

    static String clock(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }
}
