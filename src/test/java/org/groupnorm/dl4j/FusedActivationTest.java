package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.util.ModelSerializer;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.activations.impl.ActivationSwish;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Sgd;
import org.nd4j.linalg.lossfunctions.LossFunctions;

/**
 * An activation set on the GroupNorm Builder computes exactly GroupNorm followed by DL4J's own ActivationLayer with
 * that activation (outputs and every gradient, float32 as networks run it), on the kernel (fused loops on the float32
 * SIMD paths of both layouts) and on the portable engine; and a configuration only
 * gets an activation from its own Builder, never from the network default or from files saved before activations.
 */
class FusedActivationTest {

    static Stream<Arguments> activationsLayoutsAndEngines() {
        Activation[] activations = {Activation.RELU, Activation.LEAKYRELU, Activation.SIGMOID, Activation.TANH,
                Activation.SWISH, Activation.ELU};
        return Stream.of(activations).flatMap(a -> Stream.of(CNN2DFormat.NCHW, CNN2DFormat.NHWC).flatMap(
                format -> Stream.of(Engine.AUTO, Engine.PORTABLE).map(engine -> Arguments.of(a, format, engine))));
    }

    @ParameterizedTest(name = "{0} {1} {2}")
    @MethodSource("activationsLayoutsAndEngines")
    void fusedActivationEqualsGroupNormThenActivationLayer(Activation activation, CNN2DFormat format, Engine engine) {
        MultiLayerNetwork fused = network(format, new GroupNormalization.Builder().groups(4).activation(activation)
                .build(), null);
        MultiLayerNetwork separate = network(format, new GroupNormalization.Builder().groups(4).build(),
                new ActivationLayer.Builder().activation(activation).build());
        separate.setParams(fused.params());
        TestNetworks.useEngine(fused, engine);
        TestNetworks.useEngine(separate, engine);
        // 16x16 positions: float32 channels-first input takes the kernel's SIMD path. Channels last, 3 examples are
        // normalized in blocks of whole examples; 1 example is split into blocks of some of its groups (strided rows)
        // when there is more than one thread.
        for (int examples : new int[]{3, 1}) {
            long[] shape = format == CNN2DFormat.NCHW ? new long[]{examples, 2, 18, 18}
                    : new long[]{examples, 18, 18, 2};
            INDArray input = Nd4j.randn(DataType.FLOAT, shape).muli(2);
            INDArray labels = Nd4j.eye(3).castTo(DataType.FLOAT).getRows(IntStream.range(0, examples).toArray());
            String where = activation + " " + format + " " + engine + " " + examples + " examples";
            assertClose(separate.output(input), fused.output(input), 1e-5, where + ": output");
            fused.setInput(input);
            fused.setLabels(labels);
            separate.setInput(input);
            separate.setLabels(labels);
            fused.computeGradientAndScore();
            separate.computeGradientAndScore();
            assertClose(separate.gradient().gradient(), fused.gradient().gradient(), 1e-5, where + ": gradients");
        }
    }

    static Stream<Arguments> gatesLayoutsTypesAndEngines() {
        return Stream.of(Activation.RELU, Activation.LEAKYRELU).flatMap(a -> Stream.of(TensorLayout.NCHW,
                TensorLayout.NHWC, TensorLayout.NCW, TensorLayout.NWC, TensorLayout.FF).flatMap(layout -> Stream.of(
                DataType.FLOAT, DataType.HALF, DataType.DOUBLE).flatMap(type -> Stream.of(Engine.AUTO,
                Engine.PORTABLE).map(engine -> Arguments.of(a, layout, type, engine)))));
    }

    /**
     * Where the pre-activation is exactly 0 (a constant group with beta 0 gives 0 at every element), the fused
     * ReLU/LeakyReLU takes DL4J's derivative there (ReLU 0, LeakyReLU 1), as GroupNorm followed by DL4J's activation
     * does, on every path: the kernel's float32 and float16 paths of both layouts and its double path, and the
     * portable engine. Half of the groups are constant, the others random.
     */
    @ParameterizedTest(name = "{0} {1} {2} {3}")
    @MethodSource("gatesLayoutsTypesAndEngines")
    void gradientAtAZeroPreActivationIsDl4jsDerivative(Activation activation, TensorLayout layout, DataType type,
                                                       Engine engine) {
        int channels = 8;
        int groups = 4;
        long[] shape = switch (layout) {
            case NCHW -> new long[]{2, channels, 5, 5};   // 25 positions: the channels-first rows path
            case NHWC -> new long[]{2, 5, 5, channels};
            case NCW -> new long[]{2, channels, 20};
            case NWC -> new long[]{2, 20, channels};
            default -> new long[]{2, channels};
        };
        INDArray x = Nd4j.randn(DataType.DOUBLE, shape);
        INDArray constantGroups = Nd4j.zeros(DataType.DOUBLE, shape);   // 1 where x is replaced by a constant
        for (int c = 0; c < channels / 2; c++) {                        // groups 0 and 1
            constantGroups.get(channelIndex(layout, shape.length, c)).assign(1);
        }
        x = x.mul(constantGroups.rsub(1)).add(constantGroups.mul(0.75)).castTo(type);
        INDArray dy = Nd4j.randn(DataType.DOUBLE, shape).castTo(type);
        INDArray gamma = Nd4j.linspace(0.5, 1.5, channels, DataType.DOUBLE).castTo(type);
        INDArray beta = Nd4j.zeros(type, channels);
        GroupNormHarness fused = new GroupNormHarness(new GroupNormalization.Builder().nIn(channels).groups(groups)
                .dataFormat(layout).activation(activation).build(), type, engine).withParams(gamma, beta);
        GroupNormHarness plain = new GroupNormHarness(new GroupNormalization.Builder().nIn(channels).groups(groups)
                .dataFormat(layout).build(), type, engine).withParams(gamma, beta);
        INDArray pre = plain.forward(x).dup();
        INDArray gradientThroughActivation = activation.getActivationFunction().backprop(pre.dup(), dy.dup())
                .getFirst();
        Pair<Gradient, INDArray> expected = plain.backward(gradientThroughActivation);
        fused.forward(x);
        Pair<Gradient, INDArray> actual = fused.backward(dy);
        double tolerance = type == DataType.HALF ? 1e-2 : 1e-5;
        String where = activation + " " + layout + " " + type + " " + engine;
        assertClose(expected.getSecond().castTo(DataType.DOUBLE), actual.getSecond().castTo(DataType.DOUBLE),
                tolerance, where + ": dx");
        for (String parameter : new String[]{"gamma", "beta"}) {
            assertClose(expected.getFirst().getGradientFor(parameter).castTo(DataType.DOUBLE),
                    actual.getFirst().getGradientFor(parameter).castTo(DataType.DOUBLE), tolerance,
                    where + ": d" + parameter);
        }
    }

    /** The indices selecting channel c of an array of this layout and rank. */
    private static INDArrayIndex[] channelIndex(TensorLayout layout, int rank, int c) {
        INDArrayIndex[] index = new INDArrayIndex[rank];
        for (int axis = 0; axis < rank; axis++) {
            index[axis] = axis == layout.channelAxis() ? NDArrayIndex.point(c) : NDArrayIndex.all();
        }
        return index;
    }

    @Test
    void networkDefaultActivationDoesNotReachGroupNorm() {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder().activation(Activation.RELU).list()
                .layer(new GroupNormalization.Builder().nIn(4).groups(2).build())
                .layer(new GroupNormalization.Builder().nIn(4).groups(2).activation(Activation.SWISH).build())
                .build();
        assertInstanceOf(ActivationIdentity.class, gn(conf, 0).fusedActivation());
        assertInstanceOf(ActivationSwish.class, gn(conf, 1).fusedActivation());
        MultiLayerConfiguration json = MultiLayerConfiguration.fromJson(conf.toJson());
        MultiLayerConfiguration yaml = MultiLayerConfiguration.fromYaml(conf.toYaml());
        for (MultiLayerConfiguration loaded : new MultiLayerConfiguration[]{json, yaml}) {
            assertInstanceOf(ActivationIdentity.class, gn(loaded, 0).fusedActivation());
            assertInstanceOf(ActivationSwish.class, gn(loaded, 1).fusedActivation());
        }
    }

    /**
     * A model saved by the release before activations existed (written by that version's code: a network with
     * {@code .activation(Activation.RELU)} as its default, conv 3x3 -> GroupNorm(2 groups, betaInit -0.5) -> softmax
     * output; its GroupNorm stores RELU, which that version never applied) loads as plain GroupNorm: the same output
     * as the network rebuilt today without an activation, and different from one with the ReLU applied.
     */
    @Test
    void modelSavedBeforeActivationsLoadsAsPlainGroupNorm() throws Exception {
        MultiLayerNetwork legacy;
        try (var in = getClass().getResourceAsStream("/legacy/groupnorm-0.1.0-relu-default.zip")) {
            legacy = ModelSerializer.restoreMultiLayerNetwork(in, false);
        }
        GroupNormalization conf = (GroupNormalization) legacy.getLayerWiseConfigurations().getConf(1).getLayer();
        assertInstanceOf(ActivationIdentity.class, conf.fusedActivation());
        MultiLayerNetwork plain = rebuilt(legacy, new GroupNormalization.Builder().groups(2).build());
        MultiLayerNetwork relu = rebuilt(legacy, new GroupNormalization.Builder().groups(2)
                .activation(Activation.RELU).build());
        INDArray input = Nd4j.randn(DataType.FLOAT, 4, 1, 6, 6);
        assertClose(plain.output(input), legacy.output(input), 0, "legacy model output");
        assertTrue(relu.output(input).sub(legacy.output(input)).amaxNumber().doubleValue() > 1e-3,
                "with the stored ReLU applied the output would differ");
        // Re-saved, it stays what it was.
        MultiLayerConfiguration again = MultiLayerConfiguration.fromJson(legacy.getLayerWiseConfigurations().toJson());
        assertInstanceOf(ActivationIdentity.class, gn(again, 1).fusedActivation());
    }

    /** The legacy network's layers with GroupNorm replaced by {@code gn}, and the legacy parameters. */
    private static MultiLayerNetwork rebuilt(MultiLayerNetwork legacy, GroupNormalization gn) {
        MultiLayerNetwork net = new MultiLayerNetwork(new NeuralNetConfiguration.Builder().dataType(DataType.FLOAT)
                .activation(Activation.RELU).list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(4).build())
                .layer(gn)
                .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(3)
                        .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(6, 6, 1)).build());
        net.init(legacy.params().dup(), false);
        return net;
    }

    /**
     * conv 3x3 (TANH, 40 channels: blocks of 2 of the 4 groups are 20 channels wide, a SIMD step and a tail) ->
     * GroupNorm -> [activation layer] -> softmax output, float32.
     */
    private static MultiLayerNetwork network(CNN2DFormat format, GroupNormalization gn, ActivationLayer activation) {
        NeuralNetConfiguration.ListBuilder list = new NeuralNetConfiguration.Builder().seed(3)
                .dataType(DataType.FLOAT).updater(new Sgd(0.1)).list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(40).activation(Activation.TANH).dataFormat(format)
                        .build())
                .layer(gn);
        if (activation != null) {
            list.layer(activation);
        }
        MultiLayerNetwork net = new MultiLayerNetwork(list
                .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(3)
                        .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(18, 18, 2, format)).build());
        net.init();
        return net;
    }

    private static GroupNormalization gn(MultiLayerConfiguration conf, int index) {
        return (GroupNormalization) conf.getConf(index).getLayer();
    }

    /** max |expected - actual| <= tolerance * max(1, max |expected|). */
    private static void assertClose(INDArray expected, INDArray actual, double tolerance, String what) {
        double scale = Math.max(1, expected.amaxNumber().doubleValue());
        double error = expected.sub(actual).amaxNumber().doubleValue();
        assertTrue(error <= tolerance * scale, what + ": error " + error + " > " + tolerance + " * " + scale);
    }
}
