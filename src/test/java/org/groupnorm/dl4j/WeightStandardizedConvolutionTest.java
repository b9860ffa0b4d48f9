package org.groupnorm.dl4j;

import static org.groupnorm.dl4j.NpyFixtures.load;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.deeplearning4j.gradientcheck.GradientCheckUtil;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.deeplearning4j.util.ModelSerializer;
import org.groupnorm.dl4j.kernel.WeightStandardizationKernel;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.groupnorm.dl4j.runtime.WeightStandardization;
import org.groupnorm.dl4j.runtime.WeightStandardizedConvolutionLayer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.config.NoOp;
import org.nd4j.linalg.lossfunctions.LossFunctions;
import org.nd4j.shade.jackson.databind.JsonNode;
import org.nd4j.shade.jackson.databind.ObjectMapper;

/**
 * WeightStandardizedConvolution: y, dx, dW, db match torch's conv2d with standardized weights (float64 fixtures),
 * gradients match finite differences in networks (MLN and graph, NCHW and NHWC, bias or not, stride, dilation),
 * the stored parameter is the raw W, and configurations round-trip and are validated.
 */
class WeightStandardizedConvolutionTest {

    private static final List<Engine> ENGINES = List.of(Engine.KERNEL, Engine.PORTABLE);
    private static final double FLOAT64_TOLERANCE = 1e-10;
    private static final double FLOAT32_RELATIVE_TOLERANCE = 1e-5;

    @TempDir
    Path dir;

    static Stream<Arguments> pyTorchCases() throws IOException, URISyntaxException {
        Path root = Path.of(WeightStandardizedConvolutionTest.class.getResource("/fixtures/wsconv-pytorch").toURI());
        try (Stream<Path> dirs = Files.list(root)) {
            return dirs.sorted().map(Path::toFile).flatMap(d -> Stream.of(DataType.DOUBLE, DataType.FLOAT)
                    .flatMap(type -> ENGINES.stream().map(engine -> Arguments.of(d.getName(), d, type, engine))))
                    .toList().stream();
        }
    }

    @ParameterizedTest(name = "{0} {2} {3}")
    @MethodSource("pyTorchCases")
    void matchesPyTorchConvolutionWithStandardizedWeights(String name, File caseDir, DataType type, Engine engine)
            throws IOException {
        JsonNode spec = new ObjectMapper().readTree(new File(caseDir, "case.json"));
        boolean hasBias = spec.get("hasBias").asBoolean();
        WeightStandardizedConvolution conf = new WeightStandardizedConvolution.Builder(ints(spec, "kernel"))
                .stride(ints(spec, "stride")).padding(ints(spec, "padding")).dilation(ints(spec, "dilation"))
                .convolutionMode(ConvolutionMode.valueOf(spec.get("convolutionMode").asText()))
                .dataFormat(CNN2DFormat.valueOf(spec.get("layout").asText()))
                .nIn(spec.get("nIn").asLong()).nOut(spec.get("nOut").asLong()).hasBias(hasBias)
                .eps(spec.get("eps").asDouble()).activation(Activation.IDENTITY).build();
        Layer layer = standalone(conf, type);
        ((WeightStandardizedConvolutionLayer) layer).setEngine(engine);
        if (engine == Engine.KERNEL) {
            assertTrue(WeightStandardizationKernel.supports(layer.getParam("W")), "the CPU loops run");
        }
        layer.setParam("W", load(caseDir, "W").castTo(type));
        if (hasBias) {
            layer.setParam("b", load(caseDir, "b").castTo(type).reshape(1, -1));
        }
        LayerWorkspaceMgr noWorkspaces = LayerWorkspaceMgr.noWorkspaces();
        layer.setInput(load(caseDir, "x").castTo(type), noWorkspaces);
        INDArray y = layer.activate(true, noWorkspaces);
        assertClose(name + " y", load(caseDir, "y"), y, type);
        Pair<Gradient, INDArray> grads = layer.backpropGradient(load(caseDir, "dy").castTo(type), noWorkspaces);
        assertClose(name + " dx", load(caseDir, "dx"), grads.getSecond(), type);
        assertClose(name + " dW", load(caseDir, "dW"), grads.getFirst().getGradientFor("W"), type);
        if (hasBias) {
            assertClose(name + " db", load(caseDir, "db"), grads.getFirst().getGradientFor("b").reshape(-1), type);
        }
        assertEquals(load(caseDir, "W").castTo(type), layer.getParam("W"), "the stored parameter stays the raw W");
    }

    static Stream<Arguments> networkVariants() {
        return ENGINES.stream().flatMap(engine -> Stream.of(CNN2DFormat.NCHW, CNN2DFormat.NHWC).flatMap(format ->
                Stream.of(Arguments.of(format, true, 1, 1, engine), Arguments.of(format, false, 1, 1, engine),
                        Arguments.of(format, true, 2, 1, engine), Arguments.of(format, false, 1, 2, engine))));
    }

    @ParameterizedTest(name = "{0} bias={1} stride={2} dilation={3} {4}")
    @MethodSource("networkVariants")
    void gradientsMatchFiniteDifferences(CNN2DFormat format, boolean hasBias, int stride, int dilation,
                                         Engine engine) {
        DataType previous = Nd4j.dataType();
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        try {
            checkGradients(format, hasBias, stride, dilation, engine);
        } finally {
            Nd4j.setDefaultDataTypes(previous, previous);
        }
    }

    private static void checkGradients(CNN2DFormat format, boolean hasBias, int stride, int dilation,
                                       Engine engine) {
        Nd4j.getRandom().setSeed(7);
        MultiLayerNetwork net = network(format, hasBias, stride, dilation, new NoOp(), DataType.DOUBLE);
        useEngine(net.getLayers(), engine);
        INDArray input = Nd4j.randn(DataType.DOUBLE, inputShape(format, 2));
        INDArray labels = Nd4j.zeros(DataType.DOUBLE, 2, 3);
        labels.putScalar(0, 1, 1.0);
        labels.putScalar(1, 2, 1.0);
        assertTrue(GradientCheckUtil.checkGradients(new GradientCheckUtil.MLNConfig().net(net).input(input)
                .labels(labels).print(GradientCheckUtil.PrintMode.FAILURES_ONLY)), "MultiLayerNetwork");
        ComputationGraph graph = net.toComputationGraph();
        useEngine(graph.getLayers(), engine);
        assertTrue(GradientCheckUtil.checkGradients(new GradientCheckUtil.GraphConfig().net(graph)
                .inputs(new INDArray[]{input}).labels(new INDArray[]{labels})
                .print(GradientCheckUtil.PrintMode.FAILURES_ONLY)), "ComputationGraph");
    }

    private static void useEngine(Layer[] layers, Engine engine) {
        int found = 0;
        for (Layer layer : layers) {
            if (layer instanceof WeightStandardizedConvolutionLayer ws) {
                ws.setEngine(engine);
                found++;
            }
        }
        assertEquals(2, found);
    }

    /** The CPU loops and the ND4J operations compute the same standardization and backward, in every storage type. */
    @ParameterizedTest
    @EnumSource(value = DataType.class, names = {"DOUBLE", "FLOAT", "HALF"})
    void kernelLoopsEqualTheNd4jOperations(DataType type) {
        Nd4j.getRandom().setSeed(11);
        // Rows of 1, 7 and 4,608 (= 512 x 3 x 3) weights; one channel constant (variance 0: eps alone), offsets of 50.
        for (long[] shape : new long[][]{{3, 1, 1, 1}, {5, 7, 1, 1}, {6, 2, 3, 3}, {4, 512, 3, 3}}) {
            INDArray weights = Nd4j.randn(DataType.DOUBLE, shape).addi(50).castTo(type);
            weights.slice(0).assign(2.5);
            INDArray gradient = Nd4j.randn(DataType.DOUBLE, shape).castTo(type);
            INDArray fromKernel = Nd4j.create(type, shape);
            INDArray fromNd4j = Nd4j.create(type, shape);
            assertTrue(WeightStandardizationKernel.supports(weights, fromKernel));
            WeightStandardizationKernel.standardize(weights, fromKernel, 1e-5);
            WeightStandardization.standardize(weights, fromNd4j, 1e-5);
            // FLOAT: ND4J centres the weights in float, losing a few ulps of the offset 50 (the loops: double);
            // HALF: both results are rounded to half, so they may differ by one half-precision ulp at |4|.
            double tolerance = type == DataType.DOUBLE ? 1e-12 : type == DataType.FLOAT ? 8 * Math.ulp(50f) : 0x1p-8;
            assertTrue(fromNd4j.castTo(DataType.DOUBLE).equalsWithEps(fromKernel.castTo(DataType.DOUBLE), tolerance),
                    type + " " + Arrays.toString(shape) + " standardized: max difference "
                            + fromNd4j.castTo(DataType.DOUBLE).sub(fromKernel.castTo(DataType.DOUBLE)).amaxNumber());
            INDArray kernelGradient = gradient.dup();
            INDArray nd4jGradient = gradient.dup();
            WeightStandardizationKernel.backward(weights, kernelGradient, 1e-5);
            WeightStandardization.backward(weights, nd4jGradient, 1e-5);
            double scale = nd4jGradient.castTo(DataType.DOUBLE).amaxNumber().doubleValue();
            assertTrue(nd4jGradient.castTo(DataType.DOUBLE).equalsWithEps(kernelGradient.castTo(DataType.DOUBLE),
                    tolerance * Math.max(1, scale)), type + " " + Arrays.toString(shape) + " gradient: max difference "
                    + nd4jGradient.castTo(DataType.DOUBLE).sub(kernelGradient.castTo(DataType.DOUBLE)).amaxNumber());
        }
    }

    /** The standardized weights are invariant to a per-output-channel shift of W (not to a scale: eps). */
    @Test
    void outputIgnoresEachChannelsWeightOffset() {
        MultiLayerNetwork net = network(CNN2DFormat.NCHW, true, 1, 1, new NoOp(), DataType.DOUBLE);
        INDArray input = Nd4j.randn(DataType.DOUBLE, inputShape(CNN2DFormat.NCHW, 3));
        INDArray before = net.output(input);
        INDArray w = net.getLayer(0).getParam("W");
        INDArray offsets = Nd4j.createFromArray(-5.0, -1.5, 2.0, 4.5).reshape(w.size(0), 1);
        INDArray rows = w.reshape(w.size(0), -1);
        net.getLayer(0).setParam("W", rows.addColumnVector(offsets).reshape(w.shape()));
        assertTrue(before.equalsWithEps(net.output(input), 1e-9), "output changed with W -> W + c_o");
    }

    @Test
    void halfPrecisionMatchesFloat32ToHalfPrecision() {
        MultiLayerNetwork single = network(CNN2DFormat.NHWC, true, 1, 1, new NoOp(), DataType.FLOAT);
        MultiLayerNetwork half = network(CNN2DFormat.NHWC, true, 1, 1, new NoOp(), DataType.HALF);
        half.setParams(single.params().castTo(DataType.HALF));
        INDArray input = Nd4j.randn(DataType.FLOAT, inputShape(CNN2DFormat.NHWC, 4));
        INDArray expected = single.feedForward(input).get(1);
        INDArray actual = half.feedForward(input.castTo(DataType.HALF)).get(1).castTo(DataType.FLOAT);
        double error = expected.sub(actual).amaxNumber().doubleValue();
        assertTrue(error < 1e-2 * expected.amaxNumber().doubleValue(), "HALF vs FLOAT max error " + error);
    }

    @Test
    void trainsAndRestoresWithItsSettings() throws IOException {
        MultiLayerNetwork net = network(CNN2DFormat.NHWC, true, 2, 1, new Adam(1e-2), DataType.FLOAT);
        INDArray input = Nd4j.randn(DataType.FLOAT, inputShape(CNN2DFormat.NHWC, 8));
        INDArray labels = Nd4j.eye(3).getRows(0, 1, 2, 0, 1, 2, 0, 1).castTo(DataType.FLOAT);
        net.fit(input, labels);
        double first = net.score();
        for (int i = 0; i < 30; i++) {
            net.fit(input, labels);
        }
        assertTrue(net.score() < 0.5 * first, "loss " + first + " -> " + net.score());

        File file = dir.resolve("ws.zip").toFile();
        ModelSerializer.writeModel(net, file, true);
        MultiLayerNetwork restored = MultiLayerNetwork.load(file, true);
        assertEquals(net.getLayerWiseConfigurations(), restored.getLayerWiseConfigurations());
        WeightStandardizedConvolution conf = (WeightStandardizedConvolution) restored.getLayer(0).conf().getLayer();
        assertEquals(1e-4, conf.getEps());
        assertInstanceOf(WeightStandardizedConvolutionLayer.class, restored.getLayer(0));
        assertEquals(net.output(input), restored.output(input));
        MultiLayerConfiguration json = MultiLayerConfiguration.fromJson(net.getLayerWiseConfigurations().toJson());
        assertEquals(net.getLayerWiseConfigurations(), json);
        assertEquals(net.getLayerWiseConfigurations(),
                MultiLayerConfiguration.fromYaml(net.getLayerWiseConfigurations().toYaml()));
    }

    @Test
    void invalidEpsIsRejectedOnEveryPath() {
        for (double eps : new double[]{0, -1, Double.NaN, Double.POSITIVE_INFINITY}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new WeightStandardizedConvolution.Builder(3, 3).name("ws1").eps(eps).build());
            assertEquals("WeightStandardizedConvolution 'ws1': eps must be a finite number > 0, got " + eps,
                    e.getMessage());
            WeightStandardizedConvolution conf = new WeightStandardizedConvolution.Builder(3, 3).name("ws2").build();
            assertTrue(assertThrows(IllegalArgumentException.class, () -> conf.setEps(eps)).getMessage()
                    .startsWith("WeightStandardizedConvolution 'ws2': eps must be a finite number > 0"));
        }
        String json = network(CNN2DFormat.NCHW, true, 1, 1, new NoOp(), DataType.FLOAT).getLayerWiseConfigurations()
                .toJson().replace("\"eps\" : 1.0E-4", "\"eps\" : -1.0");
        assertTrue(json.contains("\"eps\" : -1.0"), "the JSON holds the layer's eps");
        RuntimeException e = assertThrows(RuntimeException.class, () -> MultiLayerConfiguration.fromJson(json));
        assertTrue(rootMessage(e).contains("eps must be a finite number > 0, got -1.0"), rootMessage(e));
    }

    private static String rootMessage(Throwable e) {
        StringBuilder messages = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            messages.append(t.getMessage()).append(" | ");
        }
        return messages.toString();
    }

    /** WS conv (tested) -> GroupNorm -> WS conv (its input gradient reaches the first) -> pooling -> softmax. */
    private static MultiLayerNetwork network(CNN2DFormat format, boolean hasBias, int stride, int dilation,
                                             org.nd4j.linalg.learning.config.IUpdater updater, DataType type) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(3).dataType(type).updater(updater).weightInit(WeightInit.XAVIER)
                .convolutionMode(ConvolutionMode.Truncate)
                .list()
                .layer(new WeightStandardizedConvolution.Builder(3, 3).nOut(4).stride(stride, stride)
                        .dilation(dilation, dilation).padding(1, 1).hasBias(hasBias).eps(1e-4)
                        .activation(Activation.IDENTITY).build())
                .layer(new GroupNormalization.Builder().groups(2).activation(Activation.TANH).build())
                .layer(new WeightStandardizedConvolution.Builder(2, 2).nOut(3).activation(Activation.TANH).build())
                .layer(new GlobalPoolingLayer.Builder().build())
                .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(3)
                        .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(7, 6, 3, format))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        return net;
    }

    private static long[] inputShape(CNN2DFormat format, int examples) {
        return format == CNN2DFormat.NCHW ? new long[]{examples, 3, 7, 6} : new long[]{examples, 7, 6, 3};
    }

    private static Layer standalone(WeightStandardizedConvolution conf, DataType type) {
        NeuralNetConfiguration nnc = new NeuralNetConfiguration.Builder().dataType(type).layer(conf).build();
        long numParams = conf.initializer().numParams(conf);
        Layer layer = conf.instantiate(nnc, null, 0, Nd4j.create(type, 1, numParams), true, type);
        layer.setBackpropGradientsViewArray(Nd4j.create(type, 1, numParams));
        return layer;
    }

    private static int[] ints(JsonNode spec, String field) {
        int[] values = new int[spec.get(field).size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = spec.get(field).get(i).asInt();
        }
        return values;
    }

    private static void assertClose(String what, INDArray expected, INDArray actual, DataType type) {
        NpyFixtures.assertClose(what, expected, actual, type, FLOAT64_TOLERANCE, FLOAT32_RELATIVE_TOLERANCE);
    }
}
