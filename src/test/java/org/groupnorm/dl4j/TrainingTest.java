package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

/** A small CNN with GroupNorm learns, in both network types, and workspace modes do not change the numbers. */
class TrainingTest {

    /** Images whose class is which half (top or bottom) holds a bright square: learnable, not trivial. */
    private static DataSet data(int examples, long seed) {
        Nd4j.getRandom().setSeed(seed);
        INDArray images = Nd4j.rand(DataType.FLOAT, examples, 1, 8, 8).muli(0.5);
        INDArray labels = Nd4j.zeros(DataType.FLOAT, examples, 2);
        for (int i = 0; i < examples; i++) {
            int half = i % 2;
            images.get(NDArrayIndex.point(i), NDArrayIndex.point(0), NDArrayIndex.interval(half * 4 + 1, half * 4 + 3),
                    NDArrayIndex.interval(2, 6)).addi(1.0);
            labels.putScalar(i, half, 1.0);
        }
        return new DataSet(images, labels);
    }

    private static MultiLayerConfiguration cnn(WorkspaceMode mode) {
        return new NeuralNetConfiguration.Builder().seed(1).updater(new Adam(1e-2))
                .trainingWorkspaceMode(mode).inferenceWorkspaceMode(mode)
                .list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY).build())
                .layer(new GroupNormalization.Builder().groups(4).build())
                .layer(new ActivationLayer(Activation.RELU))
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY).build())
                .layer(new GroupNormalization.Builder().groups(2).build())
                .layer(new ActivationLayer(Activation.RELU))
                .layer(new GlobalPoolingLayer())
                .layer(new OutputLayer.Builder(LossFunction.MCXENT).nOut(2).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(8, 8, 1))
                .build();
    }

    @Test
    void multiLayerNetworkLearns() {
        MultiLayerNetwork net = new MultiLayerNetwork(cnn(WorkspaceMode.ENABLED));
        net.init();
        DataSet train = data(32, 5);
        double before = net.score(train);
        for (int i = 0; i < 60; i++) {
            net.fit(train);
        }
        assertTrue(net.score(train) < 0.5 * before, "loss " + before + " -> " + net.score(train));
        assertTrue(net.evaluate(new org.deeplearning4j.datasets.iterator.ExistingDataSetIterator(
                java.util.List.of(data(64, 9)))).accuracy() > 0.9);
    }

    /** DL4J trains HALF networks (with SGD: Adam in HALF goes NaN in DL4J M2.1 whatever the layers). */
    @Test
    void halfPrecisionNetworkLearns() {
        TestNetworks.Case c = TestNetworks.forLayout(TensorLayout.NCHW, new GroupNormalization.Builder().groups(2),
                new org.nd4j.linalg.learning.config.Sgd(0.01), DataType.HALF);
        DataSet train = new DataSet(c.input().castTo(DataType.HALF), c.labels().castTo(DataType.HALF));
        double before = c.net().score(train);
        for (int i = 0; i < 10; i++) {
            c.net().fit(train);
        }
        double after = c.net().score(train);
        assertTrue(Double.isFinite(after) && after < 0.1 * before, "loss " + before + " -> " + after);
    }

    @Test
    void computationGraphLearns() {
        MultiLayerNetwork mln = new MultiLayerNetwork(cnn(WorkspaceMode.ENABLED));
        mln.init();
        ComputationGraph net = mln.toComputationGraph();
        DataSet train = data(32, 5);
        double before = net.score(train);
        for (int i = 0; i < 60; i++) {
            net.fit(train);
        }
        assertTrue(net.score(train) < 0.5 * before, "loss " + before + " -> " + net.score(train));
    }

    @Test
    void workspacesOnAndOffGiveIdenticalResults() {
        MultiLayerNetwork enabled = new MultiLayerNetwork(cnn(WorkspaceMode.ENABLED));
        MultiLayerNetwork none = new MultiLayerNetwork(cnn(WorkspaceMode.NONE));
        enabled.init();
        none.init();
        assertEquals(enabled.params(), none.params());
        DataSet train = data(16, 3);
        for (int i = 0; i < 5; i++) {
            enabled.fit(train);
            none.fit(train);
        }
        assertEquals(enabled.params(), none.params());
        assertEquals(enabled.output(train.getFeatures()), none.output(train.getFeatures()));
    }
}
