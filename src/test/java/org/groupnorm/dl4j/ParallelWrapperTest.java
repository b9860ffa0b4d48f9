package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.nd4j.linalg.indexing.NDArrayIndex.all;
import static org.nd4j.linalg.indexing.NDArrayIndex.interval;
import static org.nd4j.linalg.indexing.NDArrayIndex.point;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.deeplearning4j.datasets.iterator.ExistingDataSetIterator;
import org.deeplearning4j.datasets.iterator.MultipleEpochsIterator;
import org.deeplearning4j.nn.api.Model;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.parallelism.ParallelWrapper;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.api.iterator.DataSetIterator;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions;

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
        MultiLayerNetwork net = new MultiLayerNetwork(mlnConfiguration());
        net.init();
        trainInAveragingMode(net);
        assertTrue(net.getLayer(1) instanceof GroupNormalizationLayer);
    }

    @Test
    void computationGraphTrainsInAveragingModeOverSeveralFits() {
        ComputationGraph net = new ComputationGraph(graphConfiguration());
        net.init();
        trainInAveragingMode(net);
        assertTrue(net.getLayer("gn") instanceof GroupNormalizationLayer);
    }

    @Test
    void trainsInGradientSharingModeWithOneFitOverAllEpochs() {
        // M2.1's SHARED_GRADIENTS deadlocks on a second fit() on the same wrapper (BatchNorm nets too), so all epochs
        // go through one fit() over a MultipleEpochsIterator.
        MultiLayerNetwork net = new MultiLayerNetwork(mlnConfiguration());
        net.init();
        Data data = Data.create();
        double before = loss(net, data.heldOut);
        assertTimeoutPreemptively(Duration.ofMinutes(3), () -> {
            try (ParallelWrapper wrapper = new ParallelWrapper.Builder<>(net).workers(WORKERS).prefetchBuffer(4)
                    .trainingMode(ParallelWrapper.TrainingMode.SHARED_GRADIENTS).build()) {
                wrapper.fit(new MultipleEpochsIterator(4, data.batches()));
            }
        });
        double after = loss(net, data.heldOut);
        assertTrue(after < 0.7 * before, "held-out loss " + before + " -> " + after);
        assertTrue(net.getLayer(1) instanceof GroupNormalizationLayer);
    }

    @Test
    void workerFailureSurfacesFromFitInsteadOfHanging() {
        MultiLayerNetwork net = new MultiLayerNetwork(mlnConfiguration());
        net.init();
        Data data = Data.create();
        List<DataSet> batches = new ArrayList<>(data.train);
        // A malformed batch: 3 input channels where the network takes 1.
        batches.set(5, new DataSet(Nd4j.rand(DataType.FLOAT, BATCH, 3, 12, 12), batches.get(5).getLabels()));
        RuntimeException e = assertTimeoutPreemptively(Duration.ofMinutes(2), () -> {
            try (ParallelWrapper wrapper = new ParallelWrapper.Builder<>(net).workers(WORKERS).prefetchBuffer(4)
                    .averagingFrequency(1).build()) {
                return assertThrows(RuntimeException.class,
                        () -> wrapper.fit(new ExistingDataSetIterator(batches)));
            }
        });
        assertTrue(causeMessages(e).contains("channels") || causeMessages(e).contains("depth"),
                "the worker's own exception is in the cause chain: " + causeMessages(e));
    }

    /** Three fit() calls (epochs) on one wrapper in averaging mode; held-out loss must fall. */
    private static void trainInAveragingMode(Model net) {
        Data data = Data.create();
        double before = loss(net, data.heldOut);
        assertTimeoutPreemptively(Duration.ofMinutes(3), () -> {
            try (ParallelWrapper wrapper = new ParallelWrapper.Builder<>(net).workers(WORKERS).prefetchBuffer(4)
                    .averagingFrequency(2).build()) {
                for (int epoch = 0; epoch < 3; epoch++) {
                    wrapper.fit(data.batches());
                }
            }
        });
        double after = loss(net, data.heldOut);
        assertTrue(after < 0.7 * before, "held-out loss " + before + " -> " + after);
    }

    private static double loss(Model net, DataSet data) {
        return net instanceof MultiLayerNetwork ? ((MultiLayerNetwork) net).score(data)
                : ((ComputationGraph) net).score(data);
    }

    private static String causeMessages(Throwable e) {
        StringBuilder messages = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            messages.append(t.getMessage()).append(" | ");
        }
        return messages.toString();
    }

    /**
     * A learnable task of 12x12 single-channel images: the class is which quadrant holds a bright blob. Training
     * batches of {@link #BATCH} and a held-out set.
     */
    private record Data(List<DataSet> train, DataSet heldOut) {
        static Data create() {
            Nd4j.getRandom().setSeed(12);
            List<DataSet> train = new ArrayList<>();
            for (int i = 0; i < 48; i++) {
                train.add(sample(BATCH, i));
            }
            return new Data(train, sample(64, 1000));
        }

        DataSetIterator batches() {
            return new ExistingDataSetIterator(train);
        }

        private static DataSet sample(int count, int offset) {
            INDArray x = Nd4j.rand(DataType.FLOAT, count, 1, 12, 12).muli(0.3);
            INDArray y = Nd4j.zeros(DataType.FLOAT, count, 4);
            for (int i = 0; i < count; i++) {
                int quadrant = (i + offset) % 4;
                int row = quadrant / 2 * 6;
                int col = quadrant % 2 * 6;
                x.get(point(i), all(), interval(row + 1, row + 5), interval(col + 1, col + 5)).addi(1.0);
                y.putScalar(i, quadrant, 1);
            }
            return new DataSet(x, y);
        }
    }

    private static MultiLayerConfiguration mlnConfiguration() {
        return new NeuralNetConfiguration.Builder().seed(5).updater(new Adam(5e-3)).list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY).build())
                .layer(new GroupNormalization.Builder().groups(4).build())
                .layer(new ActivationLayer(Activation.RELU))
                .layer(new GlobalPoolingLayer(PoolingType.MAX))
                .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(4)
                        .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(12, 12, 1))
                .build();
    }

    private static ComputationGraphConfiguration graphConfiguration() {
        return new NeuralNetConfiguration.Builder().seed(5).updater(new Adam(5e-3)).graphBuilder()
                .addInputs("in")
                .setInputTypes(InputType.convolutional(12, 12, 1))
                .addLayer("conv", new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY)
                        .build(), "in")
                .addLayer("gn", new GroupNormalization.Builder().groups(4).build(), "conv")
                .addLayer("relu", new ActivationLayer(Activation.RELU), "gn")
                .addLayer("pool", new GlobalPoolingLayer(PoolingType.MAX), "relu")
                .addLayer("out", new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(4)
                        .activation(Activation.SOFTMAX).build(), "pool")
                .setOutputs("out")
                .build();
    }
}
