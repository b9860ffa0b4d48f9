package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.file.Path;
import org.deeplearning4j.gradientcheck.GradientCheckUtil;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.util.ModelSerializer;
import org.deeplearning4j.zoo.model.ResNet50;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.config.NoOp;
import org.nd4j.linalg.learning.config.Nesterovs;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

/** BatchNorm layers become GroupNorm layers; everything else about the network stays as it was. */
class BatchNormToGroupNormTest {

    @TempDir
    Path dir;

    @Test
    void resNet50LosesAllItsBatchNormsAndKeepsEverythingElse() throws IOException {
        ComputationGraph original = ResNet50.builder().numClasses(10).updater(new Nesterovs(1e-2, 0.9)).build()
                .init();
        BatchNormToGroupNorm.Report<ComputationGraph> report = BatchNormToGroupNorm.convertWithReport(original,
                new BatchNormToGroupNorm.Options());
        ComputationGraph converted = report.result();

        assertEquals(53, report.swappedLayers().size());
        long batchNorms = 0;
        long groupNorms = 0;
        for (Layer layer : converted.getLayers()) {
            batchNorms += layer.conf().getLayer() instanceof BatchNormalization ? 1 : 0;
            groupNorms += layer.conf().getLayer() instanceof GroupNormalization ? 1 : 0;
        }
        assertEquals(0, batchNorms);
        assertEquals(53, groupNorms);
        for (Layer layer : original.getLayers()) {
            String name = layer.conf().getLayer().getLayerName();
            if (!(layer.conf().getLayer() instanceof BatchNormalization)) {
                assertEquals(layer.params(), converted.getLayer(name).params(), name);
                assertEquals(original.getConfiguration().getVertexInputs().get(name),
                        converted.getConfiguration().getVertexInputs().get(name), name);
            } else {
                GroupNormalization gn = (GroupNormalization) converted.getLayer(name).conf().getLayer();
                assertEquals(32, gn.getGroups(), name);
                assertInstanceOf(Nesterovs.class, gn.getIUpdater(), name + " keeps the network's updater");
            }
        }

        ComputationGraphConfiguration conf = converted.getConfiguration();
        assertEquals(conf, ComputationGraphConfiguration.fromJson(conf.toJson()));
        File file = dir.resolve("resnet50-gn.zip").toFile();
        ModelSerializer.writeModel(converted, file, true);
        assertEquals(converted.params(), ModelSerializer.restoreComputationGraph(file, true).params());

        INDArray before = converted.params().dup();
        converted.fit(new INDArray[]{Nd4j.rand(DataType.FLOAT, 2, 3, 224, 224)},
                new INDArray[]{Nd4j.eye(10).getRows(0, 1)});
        assertNotEquals(before, converted.params());
    }

    private static MultiLayerNetwork bnCnn() {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(3)
                .updater(new Adam(1e-2)).l2(1e-4)
                .list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(12).activation(Activation.IDENTITY).build())
                .layer(new BatchNormalization.Builder().build())
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(6).activation(Activation.RELU).build())
                .layer(new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(8, 8, 2))
                .build());
        net.init();
        return net;
    }

    @Test
    void multiLayerCnnIsConvertedWithWeightsAndUpdaterStateKept() {
        MultiLayerNetwork original = bnCnn();
        INDArray input = Nd4j.rand(DataType.FLOAT, 4, 2, 8, 8);
        INDArray labels = Nd4j.eye(3).getRows(0, 1, 2, 0);
        original.fit(input, labels);   // learned BN gamma/beta and non-zero Adam state
        MultiLayerNetwork converted = BatchNormToGroupNorm.convert(original);

        assertEquals(original.getLayer(0).params(), converted.getLayer(0).params());
        assertEquals(original.getLayer(3).params(), converted.getLayer(3).params());
        GroupNormalization gn = (GroupNormalization) converted.getLayer(1).conf().getLayer();
        assertEquals(12, gn.groupsFor(12), "12 channels: the largest divisor <= 32 is 12");
        assertEquals(original.getLayer(1).getParam("gamma"), converted.getLayer(1).getParam("gamma"));
        assertEquals(original.getLayer(1).getParam("beta"), converted.getLayer(1).getParam("beta"));
        assertEquals(1e-4, ((org.nd4j.linalg.learning.regularization.L2Regularization) converted.getLayer(0).conf()
                .getLayer().getRegularizationByParam("W").get(0)).getL2().valueAt(0, 0), 0.0);
        assertInstanceOf(Adam.class, gn.getIUpdater());

        converted.fit(input, labels);
        assertNotEquals(original.getLayer(0).params(), converted.getLayer(0).params());
        double loss = converted.score();
        for (int i = 0; i < 20; i++) {
            converted.fit(input, labels);
        }
        assertTrue(converted.score() < loss, "trains: " + loss + " -> " + converted.score());
    }

    @Test
    void updaterStateOfUnchangedLayersIsCarriedOver() {
        MultiLayerNetwork original = bnCnn();
        INDArray input = Nd4j.rand(DataType.FLOAT, 4, 2, 8, 8);
        original.fit(input, Nd4j.eye(3).getRows(0, 1, 2, 0));
        MultiLayerNetwork converted = BatchNormToGroupNorm.convert(original);
        INDArray originalState = original.getUpdater().getStateViewArray();
        INDArray convertedState = converted.getUpdater().getStateViewArray();
        // Conv0 W+b (12*2*9 + 12 = 228 params) is the first block in both: Adam's M then V segments for it.
        long conv0 = 12 * 2 * 9 + 12;
        assertTrue(originalState.getDouble(0) != 0 || originalState.getDouble(1) != 0);
        assertEquals(originalState.get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, conv0)),
                convertedState.get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, conv0)));
    }

    /** In a graph the updater's blocks hold vertices, not layers (this once failed with a ClassCastException). */
    @Test
    void updaterStateOfAGraphIsCarriedOver() {
        ComputationGraph original = bnCnn().toComputationGraph();
        original.fit(new INDArray[]{Nd4j.rand(DataType.FLOAT, 4, 2, 8, 8)}, new INDArray[]{Nd4j.eye(3).getRows(0, 1, 2, 0)});
        ComputationGraph converted = BatchNormToGroupNorm.convert(original);
        long conv0 = 12 * 2 * 9 + 12;
        INDArray originalState = original.getUpdater().getStateViewArray();
        assertTrue(originalState.getDouble(0) != 0 || originalState.getDouble(1) != 0);
        assertEquals(originalState.get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, conv0)),
                converted.getUpdater().getStateViewArray().get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, conv0)));
    }

    /** BatchNorm with lockGammaBeta has fixed gamma/beta and no parameters; the GroupNorm keeps them fixed. */
    @Test
    void lockedGammaAndBetaStayFixed() {
        for (double[] fixed : new double[][]{{1, 0}, {2, 0.5}}) {
            MultiLayerNetwork original = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(3)
                    .updater(new Adam(1e-2)).list()
                    .layer(new ConvolutionLayer.Builder(3, 3).nOut(4).activation(Activation.IDENTITY).build())
                    .layer(new BatchNormalization.Builder().lockGammaBeta(true).gamma(fixed[0]).beta(fixed[1]).build())
                    .layer(new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                    .setInputType(InputType.convolutional(6, 6, 2)).build());
            original.init();
            MultiLayerNetwork converted = BatchNormToGroupNorm.convert(original,
                    new BatchNormToGroupNorm.Options().groups(2));
            org.deeplearning4j.nn.api.Layer gn = converted.getLayer(1);
            INDArray x = Nd4j.rand(DataType.FLOAT, 2, 2, 6, 6);
            converted.fit(x, Nd4j.eye(3).getRows(0, 1));
            if (fixed[0] == 1) {
                assertEquals(0, gn.numParams(), "identity: no parameters at all");
            } else {
                assertEquals(Nd4j.valueArrayOf(new long[]{4}, 2.0, DataType.FLOAT), gn.getParam("gamma"));
                assertEquals(Nd4j.valueArrayOf(new long[]{4}, 0.5, DataType.FLOAT), gn.getParam("beta"));
            }
            // After training, the output is still (x - mean) / std * gamma + beta with the fixed values.
            INDArray conv = converted.feedForwardToLayer(0, x, false).get(1);
            INDArray grouped = conv.reshape(2, 2, 2 * 16);   // [N, G, C/G * H * W] of the 4x4x4 conv output
            INDArray mean = grouped.mean(true, 2);
            INDArray std = org.nd4j.linalg.ops.transforms.Transforms.sqrt(grouped.var(false, 2).reshape(2, 2, 1)
                    .add(1e-5));
            INDArray expected = grouped.sub(mean).div(std).mul(fixed[0]).add(fixed[1]).reshape(
                    conv.shape());
            assertTrue(expected.equalsWithEps(converted.feedForwardToLayer(1, x, false).get(2), 1e-4));
        }
    }

    @Test
    void convertedLayersPassTheGradientCheck() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        try {
            MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(3)
                    .dataType(DataType.DOUBLE).updater(new NoOp())
                    .list()
                    .layer(new ConvolutionLayer.Builder(2, 2).nOut(4).activation(Activation.TANH).build())
                    .layer(new BatchNormalization.Builder().build())
                    .layer(new OutputLayer.Builder(LossFunction.MSE).nOut(2).activation(Activation.IDENTITY).build())
                    .setInputType(InputType.convolutional(4, 4, 2))
                    .build());
            net.init();
            ComputationGraph graph = BatchNormToGroupNorm.convert(net.toComputationGraph(),
                    new BatchNormToGroupNorm.Options().groups(2));
            assertTrue(GradientCheckUtil.checkGradients(new GradientCheckUtil.GraphConfig().net(graph)
                    .inputs(new INDArray[]{Nd4j.rand(DataType.DOUBLE, 3, 2, 4, 4)})
                    .labels(new INDArray[]{Nd4j.rand(DataType.DOUBLE, 3, 2)})));
        } finally {
            Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        }
    }

    @Test
    void aNetworkWithoutBatchNormComesBackEquivalent() {
        TestNetworks.Case c = TestNetworks.forLayout(TensorLayout.FF, new GroupNormalization.Builder().groups(2),
                new Adam(), DataType.FLOAT);
        BatchNormToGroupNorm.Report<MultiLayerNetwork> report = BatchNormToGroupNorm.convertWithReport(c.net(),
                new BatchNormToGroupNorm.Options());
        assertEquals(0, report.swappedLayers().size());
        assertEquals("Swapped 0 BatchNormalization layers for GroupNormalization", report.toString());
        assertEquals(c.net().params(), report.result().params());
        assertEquals(c.net().output(c.input()), report.result().output(c.input()));
    }

    @Test
    void configurationsAloneConvertToo() {
        ComputationGraphConfiguration conf = bnCnn().toComputationGraph().getConfiguration();
        ComputationGraphConfiguration converted = BatchNormToGroupNorm.convert(conf);
        assertEquals(1, layersOfType(conf, BatchNormalization.class));
        assertEquals(0, layersOfType(converted, BatchNormalization.class));
        assertEquals(1, layersOfType(converted, GroupNormalization.class));
        assertEquals(conf.getVertexInputs(), converted.getVertexInputs());
        assertInstanceOf(GroupNormalization.class,
                BatchNormToGroupNorm.convert(bnCnn().getLayerWiseConfigurations()).getConf(1).getLayer());
    }

    private static long layersOfType(ComputationGraphConfiguration conf, Class<?> type) {
        return conf.getVertices().values().stream()
                .filter(v -> v instanceof org.deeplearning4j.nn.conf.graph.LayerVertex)
                .filter(v -> type.isInstance(((org.deeplearning4j.nn.conf.graph.LayerVertex) v).getLayerConf()
                        .getLayer()))
                .count();
    }

    @Test
    void ungroupableChannelsAreAClearError() {
        Exception e = assertThrows(IllegalArgumentException.class, () -> BatchNormToGroupNorm.convert(bnCnn(),
                new BatchNormToGroupNorm.Options().groups(5)));
        assertTrue(e.getMessage().contains("GroupNormalization 'layer1'"), e.getMessage());
        assertTrue(e.getMessage().contains("12 channels are not divisible by 5 groups"), e.getMessage());
    }
}
