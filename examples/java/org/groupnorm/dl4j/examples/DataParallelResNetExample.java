package org.groupnorm.dl4j.examples;

import java.util.Locale;
import org.deeplearning4j.datasets.iterator.ExistingDataSetIterator;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.parallelism.ParallelWrapper;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.Minibatches;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.ViewIterator;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Data-parallel training of the small-batch ResNet with DL4J's ParallelWrapper: {@value #WORKERS} workers on this
 * machine, each training on its own minibatches of {@value #BATCH_PER_WORKER} images, parameters averaged every
 * {@value #AVERAGING_FREQUENCY} steps; against one process at the same per-step batch. BatchNorm computes its
 * statistics per worker from 2 images (DL4J has no synchronized BatchNorm); GroupNorm's statistics never cross
 * images, so it loses nothing. Prints test error and throughput of each.
 *
 * <p>Run with {@code OMP_NUM_THREADS=1} so each worker's ND4J ops use one core: two workers then use two cores.
 * Arguments: [epochs] [training images per class].
 */
public class DataParallelResNetExample {

    private static final int WORKERS = 2;
    private static final int BATCH_PER_WORKER = 2;
    private static final int AVERAGING_FREQUENCY = 4;
    private static final int DEFAULT_EPOCHS = 2;
    private static final int DEFAULT_TRAIN_PER_CLASS = 200;
    private static final int TEST_PER_CLASS = 200;
    private static final long SEED = 42;

    public static void main(String[] args) throws Exception {
        int epochs = args.length > 0 ? Integer.parseInt(args[0]) : DEFAULT_EPOCHS;
        int perClass = args.length > 1 ? Integer.parseInt(args[1]) : DEFAULT_TRAIN_PER_CLASS;

        // 1. Data: minibatches of 2, the same order for every run.
        FashionMnist data = FashionMnist.locate(null);
        DataSet train = data.train(perClass);
        DataSet test = data.test(TEST_PER_CLASS);
        System.out.printf(Locale.ROOT, "Fashion-MNIST from %s: %d training, %d test images; %d epochs, batch %d per "
                + "worker, ND4J threads %d%n", data.folder(), train.numExamples(), test.numExamples(), epochs,
                BATCH_PER_WORKER, Nd4j.getEnvironment().maxMasterThreads());

        // 2. Train each norm in one process and with the ParallelWrapper.
        System.out.printf(Locale.ROOT, "%n%-4s %-26s %12s %14s%n", "norm", "training", "test error", "examples/s");
        for (SmallResNet.Norm norm : new SmallResNet.Norm[]{SmallResNet.Norm.BATCH, SmallResNet.Norm.GROUP}) {
            double single = 0;
            for (boolean parallel : new boolean[]{false, true}) {
                ComputationGraph net = new SmallResNet().norm(norm).seed(SEED)
                        .learningRate(SmallResNet.learningRateFor(BATCH_PER_WORKER)).build();
                long start = System.nanoTime();
                train(net, train, epochs, parallel);
                double examples = (double) (train.numExamples() / BATCH_PER_WORKER) * BATCH_PER_WORKER * epochs;
                double rate = examples / ((System.nanoTime() - start) / 1e9);
                double error = 1 - net.evaluate(new ViewIterator(test, 500)).accuracy();
                single = parallel ? single : rate;
                System.out.printf(Locale.ROOT, "%-4s %-26s %11.2f%% %14.1f%s%n", norm.label(),
                        parallel ? "ParallelWrapper, " + WORKERS + " workers" : "one process", 100 * error, rate,
                        parallel ? String.format(Locale.ROOT, "  (%.2fx one process)", rate / single) : "");
            }
        }
    }

    private static void train(ComputationGraph net, DataSet train, int epochs, boolean parallel) throws Exception {
        if (!parallel) {
            for (int epoch = 0; epoch < epochs; epoch++) {
                net.fit(minibatches(train, epoch));
            }
            return;
        }
        // Averaging mode: a worker per core, each with its own copy of the network (cloned through its JSON
        // configuration, which is how the GroupNorm layer reaches the workers), averaged every few steps.
        try (ParallelWrapper wrapper = new ParallelWrapper.Builder<>(net).workers(WORKERS).prefetchBuffer(8)
                .averagingFrequency(AVERAGING_FREQUENCY).build()) {
            for (int epoch = 0; epoch < epochs; epoch++) {
                wrapper.fit(minibatches(train, epoch));
            }
        }
    }

    /** The epoch's minibatches of {@value #BATCH_PER_WORKER}, shuffled by the seed and the epoch. */
    private static ExistingDataSetIterator minibatches(DataSet train, int epoch) {
        return new ExistingDataSetIterator(new Minibatches(train, BATCH_PER_WORKER, SEED, epoch));
    }
}
