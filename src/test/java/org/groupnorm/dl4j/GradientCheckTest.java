package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.stream.Stream;
import org.deeplearning4j.gradientcheck.GradientCheckUtil;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.NoOp;

/**
 * DL4J's GradientCheckUtil (double precision, central differences) passes for networks with GroupNorm, as a
 * MultiLayerNetwork and as a ComputationGraph, on both engines. A parameterized layer before GroupNorm makes the
 * check cover GroupNorm's input gradient too, and the stacked case shows gradients do not compound.
 */
class GradientCheckTest {

    @BeforeAll
    static void doublePrecision() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
    }

    static Stream<Arguments> layoutsAndEngines() {
        return Stream.of(TensorLayout.values()).flatMap(layout -> Stream.of(Engine.KERNEL, Engine.PORTABLE, Engine.SAMEDIFF)
                .map(engine -> Arguments.of(layout, engine)));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("layoutsAndEngines")
    void gradientsMatchFiniteDifferencesOnEveryLayout(TensorLayout layout, Engine engine) {
        check(TestNetworks.forLayout(layout, new GroupNormalization.Builder().groups(3), new NoOp(),
                DataType.DOUBLE), engine);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("layoutsAndEngines")
    void layerNormAndInstanceNormExtremesPass(TensorLayout layout, Engine engine) {
        check(TestNetworks.forLayout(layout, new GroupNormalization.Builder().groups(1), new NoOp(),
                DataType.DOUBLE), engine);
        check(TestNetworks.forLayout(layout, new GroupNormalization.Builder().groupSize(1), new NoOp(),
                DataType.DOUBLE), engine);
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void withoutAffineParametersPass(Engine engine) {
        check(TestNetworks.forLayout(TensorLayout.NCHW, new GroupNormalization.Builder().groups(2).affine(false),
                new NoOp(), DataType.DOUBLE), engine);
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void stackedLayersPass(Engine engine) {
        check(TestNetworks.stacked(new NoOp(), DataType.DOUBLE), engine);
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void flattenedImageInputPasses(Engine engine) {
        check(TestNetworks.convolutionalFlat(new NoOp(), DataType.DOUBLE), engine);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("recurrentLayoutsAndEngines")
    void maskedTimeStepsPass(TensorLayout layout, Engine engine) {
        check(TestNetworks.masked(layout, new NoOp(), DataType.DOUBLE), engine);
    }

    /**
     * Every fused activation (and ELU, which the layer runs through its own backprop on the portable engine), in a
     * channels-first and a channels-last layout, and with masked time steps: the activation's gradient goes into
     * GroupNorm's backward on every path.
     */
    @ParameterizedTest(name = "{0} {1} {2}")
    @MethodSource("activationsLayoutsAndEngines")
    void activationsPass(Activation activation, TensorLayout layout, Engine engine) {
        GroupNormalization.Builder gn = new GroupNormalization.Builder().groups(3).activation(activation);
        check(layout == TensorLayout.NWC ? TestNetworks.masked(layout, gn, new NoOp(), DataType.DOUBLE)
                : TestNetworks.forLayout(layout, gn, new NoOp(), DataType.DOUBLE), engine);
    }

    static Stream<Arguments> activationsLayoutsAndEngines() {
        Activation[] activations = {Activation.RELU, Activation.LEAKYRELU, Activation.SIGMOID, Activation.TANH,
                Activation.SWISH, Activation.ELU};
        return Stream.of(activations).flatMap(a -> Stream.of(TensorLayout.NCHW, TensorLayout.NHWC, TensorLayout.NWC)
                .flatMap(layout -> Stream.of(Engine.AUTO, Engine.PORTABLE).map(e -> Arguments.of(a, layout, e))));
    }

    static Stream<Arguments> recurrentLayoutsAndEngines() {
        return Stream.of(TensorLayout.NCW, TensorLayout.NWC).flatMap(layout -> Stream.of(Engine.KERNEL,
                Engine.PORTABLE, Engine.SAMEDIFF).map(engine -> Arguments.of(layout, engine)));
    }

    private static void check(TestNetworks.Case c, Engine engine) {
        TestNetworks.useEngine(c.net(), engine);
        boolean mlnPasses = GradientCheckUtil.checkGradients(new GradientCheckUtil.MLNConfig().net(c.net())
                .input(c.input()).labels(c.labels()).inputMask(c.mask()).labelMask(c.mask())
                .print(GradientCheckUtil.PrintMode.FAILURES_ONLY));
        assertTrue(mlnPasses, "MultiLayerNetwork gradient check");

        ComputationGraph graph = c.net().toComputationGraph();
        TestNetworks.useEngine(graph, engine);
        GradientCheckUtil.GraphConfig graphCheck = new GradientCheckUtil.GraphConfig().net(graph)
                .inputs(new org.nd4j.linalg.api.ndarray.INDArray[]{c.input()})
                .labels(new org.nd4j.linalg.api.ndarray.INDArray[]{c.labels()})
                .print(GradientCheckUtil.PrintMode.FAILURES_ONLY);
        if (c.mask() != null) {
            graphCheck.inputMask(new org.nd4j.linalg.api.ndarray.INDArray[]{c.mask()})
                    .labelMask(new org.nd4j.linalg.api.ndarray.INDArray[]{c.mask()});
        }
        assertTrue(GradientCheckUtil.checkGradients(graphCheck), "ComputationGraph gradient check");
    }
}
