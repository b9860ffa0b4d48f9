package org.groupnorm.dl4j.examples;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.groupnorm.dl4j.examples.support.ErrorChart;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.IdxFile;
import org.groupnorm.dl4j.examples.support.Minibatches;
import org.groupnorm.dl4j.examples.support.Progress;
import org.groupnorm.dl4j.examples.support.ResultsTable;
import org.groupnorm.dl4j.examples.support.RunResult;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.nd4j.evaluation.classification.Evaluation;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.ViewIterator;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The paper's experiment (Wu &amp; He 2018, figure 1) on a small scale: the same ResNet trained with BatchNorm, with
 * GroupNorm and with GroupNorm after weight-standardized convolutions (GN+WS) at several batch sizes, the learning rate
 * scaled linearly with the batch size and the same number of epochs for every batch size; test error of each,
 * BatchNorm evaluated with its running statistics as DL4J does at inference. Prints the paper-style table and writes
 * results.csv and results.png to the output folder.
 *
 * <p>Defaults take about 15 minutes on 2 CPU cores; {@code --help} lists the flags (full data set, epochs, batch
 * sizes, norms, groups, seed, output folder, data folder, earlier results to add to).
 */
public class SmallBatchResNetExample {

    private static final int EVAL_BATCH = 500;
    /**
     * ND4J's CPU backend frees arrays made outside workspaces (minibatches, DL4J BatchNorm's temporaries) only when
     * the garbage collector finds them, and with little on-heap garbage it rarely runs: the process then grows by GBs
     * of native memory. A collection this often keeps it near 600 MB, at no measurable cost in speed.
     */
    private static final long GC_INTERVAL_NANOS = 5_000_000_000L;

    public static void main(String[] args) throws IOException {
        ExperimentOptions options;
        try {
            options = ExperimentOptions.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage() + "\n\n" + ExperimentOptions.USAGE);
            System.exit(2);
            return;
        }
        if (options.help()) {
            System.out.println(ExperimentOptions.USAGE);
            return;
        }
        try {
            run(options, System.out);
        } catch (IdxFile.DataFileException e) {
            System.err.println("Cannot read Fashion-MNIST: " + e.getMessage());   // names the file and the problem
            System.exit(1);
        }
    }

    /** Runs every (batch size, norm) pair and writes the table, CSV and chart; returns the results. */
    public static ResultsTable run(ExperimentOptions options, PrintStream out) throws IOException {
        // 1. Data: a folder given by flag, else the Debian package's full set, else the subset in the repository.
        FashionMnist data = FashionMnist.locate(options.dataFolder());
        DataSet train = data.train(options.trainPerClass());
        DataSet test = data.test(options.testPerClass());
        out.printf(Locale.ROOT, "Fashion-MNIST from %s%s: %d training and %d test images%n", data.folder(),
                data.isEmbeddedSubset() ? " (the subset shipped in the repository; apt-get install "
                        + "dataset-fashion-mnist for the full 60k/10k)" : "", train.numExamples(), test.numExamples());
        if (Nd4j.getEnvironment().isCPU()) {
            out.println("GroupNorm CPU kernel: " + (GroupNormKernel.usesVectorApi() ? "Vector API (SIMD) loops"
                    : "plain Java loops (start the JVM with --add-modules jdk.incubator.vector for SIMD loops)"));
        }
        Files.createDirectories(options.outputFolder());

        // 2. Train and evaluate every norm at every batch size.
        ResultsTable results = new ResultsTable();
        List<Progress.PlannedRun> plan = new ArrayList<>();
        for (int batchSize : options.batchSizes()) {
            for (SmallResNet.Norm norm : options.norms()) {
                plan.add(new Progress.PlannedRun(batchSize,
                        Minibatches.examplesPerEpoch(train.numExamples(), batchSize) * options.epochs()));
            }
        }
        Progress progress = new Progress(out, options.progressSeconds(), plan);
        for (int batchSize : options.batchSizes()) {
            for (SmallResNet.Norm norm : options.norms()) {
                RunResult result = trainAndEvaluate(options, norm, batchSize, train, test, progress);
                results.add(result);
                out.printf(Locale.ROOT, "%s batch %d: test error %.2f%%, final train loss %.4f, %.0f s, "
                                + "%.0f examples/s%n", result.norm().label(), batchSize, 100 * result.testError(),
                        result.finalTrainLoss(), result.trainSeconds(), result.examplesPerSecond());
            }
        }

        // 3. Report: the paper-style table, a CSV with every number, and the chart; with --add-to, also the runs of an
        //    earlier results.csv that this one did not repeat.
        if (options.addTo() != null) {
            addEarlierRuns(results, ResultsTable.readCsv(options.addTo()), options.addTo(), out);
        }
        out.println();
        out.println("Test error (%) by batch size, " + options.epochs() + " epochs each, learning rate "
                + SmallResNet.BASE_LEARNING_RATE + " x batch / " + SmallResNet.BASE_BATCH + ":");
        out.print(results.format());
        Path csv = options.outputFolder().resolve("results.csv");
        Path png = options.outputFolder().resolve("results.png");
        results.writeCsv(csv);
        ErrorChart.writePng(results, String.format(Locale.ROOT, "Fashion-MNIST ResNet, %d train images, %d epochs",
                train.numExamples(), options.epochs()), png);
        out.println("Wrote " + csv.toAbsolutePath() + " and " + png.toAbsolutePath());
        return results;
    }

    /**
     * Adds the runs of {@code earlier} that {@code results} has no run for (same norm and batch size), after checking
     * that they were trained on the same data for the same epochs.
     */
    private static void addEarlierRuns(ResultsTable results, ResultsTable earlier, Path file, PrintStream out) {
        RunResult reference = results.runs().get(0);
        for (RunResult run : earlier.runs()) {
            if (results.find(run.norm(), run.batchSize()).isPresent()) {
                continue;
            }
            if (run.epochs() != reference.epochs() || run.trainExamples() != reference.trainExamples()
                    || run.testExamples() != reference.testExamples()) {
                throw new IllegalArgumentException(String.format(Locale.ROOT, "--add-to %s: its %s batch %d run "
                                + "trained %d epochs on %d images and tested on %d; this run: %d, %d and %d", file,
                        run.norm().label(), run.batchSize(), run.epochs(), run.trainExamples(), run.testExamples(),
                        reference.epochs(), reference.trainExamples(), reference.testExamples()));
            }
            results.add(run);
            out.printf(Locale.ROOT, "%s batch %d: test error %.2f%% (from %s)%n", run.norm().label(),
                    run.batchSize(), 100 * run.testError(), file);
        }
    }

    private static RunResult trainAndEvaluate(ExperimentOptions options, SmallResNet.Norm norm, int batchSize,
                                              DataSet train, DataSet test, Progress progress) {
        double learningRate = SmallResNet.learningRateFor(batchSize);
        ComputationGraph net = new SmallResNet().norm(norm).groups(options.groups())
                .batchNormDecay(options.batchNormDecay()).widths(options.widths())
                .blocksPerStage(options.blocksPerStage()).seed(options.seed()).learningRate(learningRate)
                .learningRateDropEpoch(dropEpoch(options.epochs())).build();

        progress.startRun(norm.label() + " batch " + batchSize);
        long start = System.nanoTime();
        long lastCollection = start;
        long trained = 0;
        double epochLoss = Double.NaN;
        for (int epoch = 0; epoch < options.epochs(); epoch++) {
            // The same example order for every norm at a batch size: a permutation from the seed and the epoch.
            Minibatches minibatches = new Minibatches(train, batchSize, options.seed(), epoch);
            double lossSum = 0;
            int step = 0;
            for (DataSet batch : minibatches) {
                net.fit(batch);
                lossSum += net.score();
                step++;
                trained += batchSize;
                progress.update(epoch + 1, options.epochs(), trained, lossSum / step);
                if (System.nanoTime() - lastCollection > GC_INTERVAL_NANOS) {
                    System.gc();
                    lastCollection = System.nanoTime();
                }
            }
            epochLoss = lossSum / step;
            net.incrementEpochCount();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Evaluation evaluation = net.evaluate(new ViewIterator(test, EVAL_BATCH));
        return new RunResult(norm, batchSize, learningRate, options.epochs(), train.numExamples(), test.numExamples(),
                1 - evaluation.accuracy(), epochLoss, seconds, trained / seconds);
    }

    /** The learning rate drops tenfold for the last third of the epochs (none for a single epoch). */
    static int dropEpoch(int epochs) {
        return epochs - Math.max(1, epochs / 3);
    }
}
