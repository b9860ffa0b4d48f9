package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.deeplearning4j.gradientcheck.GradientCheckUtil;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.graph.LayerVertex;
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
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.config.Nesterovs;
import org.nd4j.linalg.learning.config.NoOp;
import org.nd4j.linalg.learning.regularization.L2Regularization;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;
import org.nd4j.linalg.ops.transforms.Transforms;

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

    /**
     * GN+WS on ResNet50: every convolution feeding a norm (all 53) becomes a WeightStandardizedConvolution with the
     * same weights and training settings, and the graph computes what the GN graph computes with each of those
     * convolutions' weights standardized by hand.
     */
    @Test
    void resNet50WithWeightStandardizationStandardizesTheConvolutionsFeedingItsNorms() {
        ComputationGraph original = ResNet50.builder().numClasses(10).updater(new Nesterovs(1e-2, 0.9)).build()
                .init();
        BatchNormToGroupNorm.Report<ComputationGraph> report = BatchNormToGroupNorm.convertWithReport(original,
                new BatchNormToGroupNorm.Options().weightStandardization(true));
        ComputationGraph gnws = report.result();
        assertEquals(53, report.standardizedConvolutions().size());
        assertTrue(report.toString().contains("; weight-standardized 53 convolutions: [stem-cnn1, "), report.toString());
        // Compared in double: 53 float layers amplify the rounding of two ways of standardizing to ~1e-4.
        ComputationGraph gn = BatchNormToGroupNorm.convert(original).convertDataType(DataType.DOUBLE);
        for (String name : report.standardizedConvolutions()) {
            ConvolutionLayer before = (ConvolutionLayer) original.getLayer(name).conf().getLayer();
            WeightStandardizedConvolution ws = assertInstanceOf(WeightStandardizedConvolution.class,
                    gnws.getLayer(name).conf().getLayer(), name);
            assertEquals(before.getKernelSize()[0], ws.getKernelSize()[0], name);
            assertEquals(before.getRegularizationByParam("W"), ws.getRegularizationByParam("W"), name);
            assertInstanceOf(Nesterovs.class, ws.getIUpdater(), name);
            assertEquals(original.getLayer(name).params(), gnws.getLayer(name).params(), name + ": raw weights");
            assertEquals(original.getConfiguration().getVertexInputs().get(name),
                    gnws.getConfiguration().getVertexInputs().get(name), name);
            INDArray w = gn.getLayer(name).getParam("W");
            INDArray rows = w.reshape(w.size(0), -1);
            INDArray std = Transforms.sqrt(rows.var(false, 1).add(1e-5));
            w.assign(rows.subColumnVector(rows.mean(1)).divColumnVector(std).reshape(w.shape()));
        }
        INDArray x = Nd4j.rand(DataType.DOUBLE, 1, 3, 224, 224);
        INDArray expected = gn.outputSingle(x);
        INDArray actual = gnws.convertDataType(DataType.DOUBLE).outputSingle(x);
        assertTrue(expected.equalsWithEps(actual, 1e-10), "GN+WS graph = GN graph on standardized W: max diff "
                + expected.sub(actual).amaxNumber());
        assertEquals(gnws.getConfiguration(), ComputationGraphConfiguration.fromJson(gnws.getConfiguration().toJson()));
    }

    /** Only plain convolutions directly before a swapped norm are standardized; the rest stay as they were. */
    @Test
    void weightStandardizationTouchesOnlyConvolutionsFeedingANorm() {
        MultiLayerNetwork original = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().seed(3)
                .updater(new Adam(1e-2)).l2(1e-4)
                .list()
                .layer(new ConvolutionLayer.Builder(3, 3).name("a").nOut(8).activation(Activation.IDENTITY).build())
                .layer(new BatchNormalization.Builder().name("bn_a").build())
                .layer(new ConvolutionLayer.Builder(3, 3).name("b").nOut(6).activation(Activation.RELU).build())
                .layer(new ConvolutionLayer.Builder(1, 1).name("c").nOut(4).activation(Activation.IDENTITY).build())
                .layer(new BatchNormalization.Builder().name("bn_c").build())
                .layer(new OutputLayer.Builder(LossFunction.MCXENT).nOut(3).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(9, 9, 2))
                .build());
        original.init();
        INDArray input = Nd4j.rand(DataType.FLOAT, 4, 2, 9, 9);
        INDArray labels = Nd4j.eye(3).getRows(0, 1, 2, 0);
        original.fit(input, labels);
        BatchNormToGroupNorm.Report<MultiLayerNetwork> report = BatchNormToGroupNorm.convertWithReport(original,
                new BatchNormToGroupNorm.Options().groups(2).weightStandardization(true));
        MultiLayerNetwork converted = report.result();
        assertEquals(List.of("a", "c"), report.standardizedConvolutions());
        assertInstanceOf(WeightStandardizedConvolution.class, converted.getLayer(0).conf().getLayer());
        assertEquals(ConvolutionLayer.class, converted.getLayer(2).conf().getLayer().getClass());
        assertInstanceOf(WeightStandardizedConvolution.class, converted.getLayer(3).conf().getLayer());
        for (int i : new int[]{0, 2, 3}) {
            assertEquals(original.getLayer(i).params(), converted.getLayer(i).params());
        }
        long convA = 8 * 2 * 9 + 8;   // conv a's W and b: the start of Adam's first block in both networks
        INDArrayIndex first = NDArrayIndex.interval(0, convA);
        assertTrue(original.getUpdater().getStateViewArray().get(first).amaxNumber().doubleValue() > 0);
        assertEquals(original.getUpdater().getStateViewArray().get(first),
                converted.getUpdater().getStateViewArray().get(first), "conv a's Adam state is carried over");
        double loss = converted.score(new DataSet(input, labels));
        for (int i = 0; i < 20; i++) {
            converted.fit(input, labels);
        }
        assertTrue(converted.score() < loss, "trains: " + loss + " -> " + converted.score());
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
        assertEquals(1e-4, ((L2Regularization) converted.getLayer(0).conf()
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
        assertEquals(originalState.get(NDArrayIndex.interval(0, conv0)),
                convertedState.get(NDArrayIndex.interval(0, conv0)));
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
        assertEquals(originalState.get(NDArrayIndex.interval(0, conv0)),
                converted.getUpdater().getStateViewArray().get(NDArrayIndex.interval(0, conv0)));
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
            Layer gn = converted.getLayer(1);
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
            INDArray std = Transforms.sqrt(grouped.var(false, 2).reshape(2, 2, 1)
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
                .filter(v -> v instanceof LayerVertex)
                .filter(v -> type.isInstance(((LayerVertex) v).getLayerConf()
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
