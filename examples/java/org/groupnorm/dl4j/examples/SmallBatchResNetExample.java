package org.groupnorm.dl4j.examples;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.groupnorm.dl4j.examples.support.ErrorChart;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.IdxFile;
import org.groupnorm.dl4j.examples.support.Progress;
import org.groupnorm.dl4j.examples.support.ResultsTable;
import org.groupnorm.dl4j.examples.support.RunResult;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.nd4j.evaluation.classification.Evaluation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.ViewIterator;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The paper's experiment (Wu &amp; He 2018, figure 1) on a small scale: the same ResNet trained with BatchNorm and with
 * GroupNorm at several batch sizes, the learning rate scaled linearly with the batch size and the same number of
 * epochs for every batch size; test error of each, BatchNorm evaluated with its running statistics as DL4J does at
 * inference. Prints the paper-style table and writes results.csv and results.png to the output folder.
 *
 * <p>Defaults take about 10 minutes on 2 CPU cores; {@code --help} lists the flags (full data set, epochs, batch
 * sizes, groups, seed, output folder, data folder).
 */
public class SmallBatchResNetExample {

    /** Learning rate at {@link #BASE_BATCH}; other batch sizes get it scaled linearly, as in the paper. */
    static final double BASE_LEARNING_RATE = 0.1;
    static final int BASE_BATCH = 32;
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

        // 2. Train and evaluate both norms at every batch size.
        ResultsTable results = new ResultsTable();
        List<Progress.PlannedRun> plan = new ArrayList<>();
        for (int batchSize : options.batchSizes()) {
            for (SmallResNet.Norm norm : options.norms()) {
                plan.add(new Progress.PlannedRun(batchSize, trainedExamples(train, batchSize, options.epochs())));
            }
        }
        Progress progress = new Progress(out, options.progressSeconds(), plan);
        for (int batchSize : options.batchSizes()) {
            for (SmallResNet.Norm norm : options.norms()) {
                RunResult result = trainAndEvaluate(options, norm, batchSize, train, test, progress);
                results.add(result);
                out.printf(Locale.ROOT, "%s batch %d: test error %.2f%%, final train loss %.4f, %.0f s, "
                                + "%.0f examples/s%n", result.norm(), batchSize, 100 * result.testError(),
                        result.finalTrainLoss(), result.trainSeconds(), result.examplesPerSecond());
            }
        }

        // 3. Report: the paper-style table, a CSV with every number, and the chart.
        out.println();
        out.println("Test error (%) by batch size, " + options.epochs() + " epochs each, learning rate "
                + BASE_LEARNING_RATE + " x batch / " + BASE_BATCH + ":");
        out.print(results.format());
        Path csv = options.outputFolder().resolve("results.csv");
        Path png = options.outputFolder().resolve("results.png");
        results.writeCsv(csv);
        ErrorChart.writePng(results, String.format(Locale.ROOT, "Fashion-MNIST ResNet, %d train images, %d epochs",
                train.numExamples(), options.epochs()), png);
        out.println("Wrote " + csv.toAbsolutePath() + " and " + png.toAbsolutePath());
        return results;
    }

    /** Training examples a run sees: whole batches only (an epoch's last partial batch is dropped). */
    private static long trainedExamples(DataSet train, int batchSize, int epochs) {
        return (long) train.numExamples() / batchSize * batchSize * epochs;
    }

    private static RunResult trainAndEvaluate(ExperimentOptions options, SmallResNet.Norm norm, int batchSize,
                                              DataSet train, DataSet test, Progress progress) {
        String name = (norm == SmallResNet.Norm.BATCH ? "BN" : "GN");
        double learningRate = BASE_LEARNING_RATE * batchSize / BASE_BATCH;
        ComputationGraph net = new SmallResNet().norm(norm).groups(options.groups())
                .batchNormDecay(options.batchNormDecay()).widths(options.widths())
                .blocksPerStage(options.blocksPerStage()).seed(options.seed()).learningRate(learningRate)
                .learningRateDropEpoch(dropEpoch(options.epochs())).build();

        int examples = train.numExamples();
        int steps = examples / batchSize;   // the last partial batch of an epoch is dropped: every step is full size
        progress.startRun(name + " batch " + batchSize);
        INDArray features = train.getFeatures().reshape(examples, -1);
        INDArray labels = train.getLabels();
        long[] imageShape = train.getFeatures().shape();
        long start = System.nanoTime();
        long lastCollection = start;
        double epochLoss = Double.NaN;
        for (int epoch = 0; epoch < options.epochs(); epoch++) {
            // The same example order for both norms at a batch size: a permutation from the seed and the epoch.
            int[] order = permutation(examples, new Random(options.seed() * 1_000_003L + epoch));
            double lossSum = 0;
            for (int step = 0; step < steps; step++) {
                int[] rows = Arrays.copyOfRange(order, step * batchSize, (step + 1) * batchSize);
                INDArray x = Nd4j.pullRows(features, 1, rows).reshape(batchSize, imageShape[1], imageShape[2],
                        imageShape[3]);
                INDArray y = Nd4j.pullRows(labels, 1, rows);
                net.fit(new DataSet(x, y));
                lossSum += net.score();
                progress.update(epoch + 1, options.epochs(), (long) (epoch * steps + step + 1) * batchSize,
                        lossSum / (step + 1));
                if (System.nanoTime() - lastCollection > GC_INTERVAL_NANOS) {
                    System.gc();
                    lastCollection = System.nanoTime();
                }
            }
            epochLoss = lossSum / steps;
            net.incrementEpochCount();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Evaluation evaluation = net.evaluate(new ViewIterator(test, EVAL_BATCH));
        return new RunResult(name, batchSize, learningRate, options.epochs(), examples, test.numExamples(),
                1 - evaluation.accuracy(), epochLoss, seconds, (double) steps * batchSize * options.epochs() / seconds);
    }

    /** The learning rate drops tenfold for the last third of the epochs (none for a single epoch). */
    static int dropEpoch(int epochs) {
        return epochs - Math.max(1, epochs / 3);
    }

    private static int[] permutation(int size, Random random) {
        int[] order = new int[size];
        for (int i = 0; i < size; i++) {
            order[i] = i;
        }
        for (int i = size - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int swap = order[i];
            order[i] = order[j];
            order[j] = swap;
        }
        return order;
    }
}
