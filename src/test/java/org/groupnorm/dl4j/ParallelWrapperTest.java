package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import org.deeplearning4j.datasets.iterator.ExistingDataSetIterator;
import org.deeplearning4j.datasets.iterator.MultipleEpochsIterator;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.parallelism.ParallelWrapper;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.dataset.DataSet;

/**
 * GroupNorm networks under DL4J's ParallelWrapper (two workers on this machine, per-worker batch 2, where BatchNorm's
 * statistics would be computed from 2 images): the config-JSON clone keeps the layer, training works in averaging
 * mode across several {@code fit} calls and in gradient-sharing mode, and a worker that throws surfaces from
 * {@code fit} instead of hanging.
 */
class ParallelWrapperTest {

    private static final int WORKERS = 2;
    private static final int BATCH = 2;

    @Test
    void multiLayerNetworkTrainsInAveragingModeOverSeveralFits() {
        MultiLayerNetwork net = new MultiLayerNetwork(QuadrantTask.multiLayerConfiguration());
        net.init();
        trainInAveragingMode(net);
        assertTrue(net.getLayer(1) instanceof GroupNormalizationLayer);
    }

    @Test
    void computationGraphTrainsInAveragingModeOverSeveralFits() {
        ComputationGraph net = new ComputationGraph(QuadrantTask.graphConfiguration());
        net.init();
        trainInAveragingMode(net);
        assertTrue(net.getLayer("gn") instanceof GroupNormalizationLayer);
    }

    @Test
    void trainsInGradientSharingModeWithOneFitOverAllEpochs() {
        // M2.1's SHARED_GRADIENTS deadlocks on a second fit() on the same wrapper (BatchNorm nets too), so all epochs
        // go through one fit() over a MultipleEpochsIterator.
        MultiLayerNetwork net = new MultiLayerNetwork(QuadrantTask.multiLayerConfiguration());
        net.init();
        List<DataSet> train = QuadrantTask.minibatches(48, BATCH);
        DataSet heldOut = QuadrantTask.sample(64, 1000);
        double before = net.score(heldOut);
        assertTimeoutPreemptively(Duration.ofMinutes(3), () -> {
            try (ParallelWrapper wrapper = new ParallelWrapper.Builder<>(net).workers(WORKERS).prefetchBuffer(4)
                    .trainingMode(ParallelWrapper.TrainingMode.SHARED_GRADIENTS).build()) {
                wrapper.fit(new MultipleEpochsIterator(4, new ExistingDataSetIterator(train)));
            }
        });
        double after = net.score(heldOut);
        assertTrue(after < 0.7 * before, "held-out loss " + before + " -> " + after);
        assertTrue(net.getLayer(1) instanceof GroupNormalizationLayer);
    }

    @Test
    void workerFailureSurfacesFromFitInsteadOfHanging() {
        MultiLayerNetwork net = new MultiLayerNetwork(QuadrantTask.multiLayerConfiguration());
        net.init();
        List<DataSet> batches = QuadrantTask.minibatches(48, BATCH);
        batches.set(5, QuadrantTask.malformed(BATCH));
        RuntimeException e = assertTimeoutPreemptively(Duration.ofMinutes(2), () -> {
            try (ParallelWrapper wrapper = new ParallelWrapper.Builder<>(net).workers(WORKERS).prefetchBuffer(4)
                    .averagingFrequency(1).build()) {
                return assertThrows(RuntimeException.class,
                        () -> wrapper.fit(new ExistingDataSetIterator(batches)));
            }
        });
        assertTrue(QuadrantTask.messages(e).contains("input channels"),
                "the worker's own exception is in the cause chain: " + QuadrantTask.messages(e));
    }

    /** Three fit() calls (epochs) on one wrapper in averaging mode; held-out loss must fall. */
    private static void trainInAveragingMode(Model net) {
        List<DataSet> train = QuadrantTask.minibatches(48, BATCH);
        DataSet heldOut = QuadrantTask.sample(64, 1000);
        double before = score(net, heldOut);
        assertTimeoutPreemptively(Duration.ofMinutes(3), () -> {
            try (ParallelWrapper wrapper = new ParallelWrapper.Builder<>(net).workers(WORKERS).prefetchBuffer(4)
                    .averagingFrequency(2).build()) {
                for (int epoch = 0; epoch < 3; epoch++) {
                    wrapper.fit(new ExistingDataSetIterator(train));
                }
            }
        });
        double after = score(net, heldOut);
        assertTrue(after < 0.7 * before, "held-out loss " + before + " -> " + after);
    }

    private static double score(Model net, DataSet data) {
        return net instanceof MultiLayerNetwork ? ((MultiLayerNetwork) net).score(data)
                : ((ComputationGraph) net).score(data);
    }
}
