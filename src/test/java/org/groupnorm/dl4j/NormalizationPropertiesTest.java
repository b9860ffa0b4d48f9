package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

/** The special cases and invariances GroupNorm promises: LayerNorm, InstanceNorm, batch independence, masks. */
class NormalizationPropertiesTest {

    private static final double EPS = 1e-5;

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void oneGroupIsLayerNormOverChannelsAndSpace(Engine engine) {
        INDArray x = Nd4j.randn(DataType.DOUBLE, 3, 6, 4, 5);
        INDArray y = layer(6, 1, engine).forward(x);
        INDArray mean = x.mean(true, 1, 2, 3);
        INDArray variance = x.var(false, 1, 2, 3).reshape(3, 1, 1, 1);
        INDArray expected = x.sub(mean).div(Transforms.sqrt(variance.add(EPS)));
        assertEquals(0, expected.sub(y).amaxNumber().doubleValue(), 1e-12);
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void oneChannelPerGroupIsInstanceNorm(Engine engine) {
        INDArray x = Nd4j.randn(DataType.DOUBLE, 3, 6, 4, 5);
        INDArray y = layer(6, 6, engine).forward(x);
        INDArray mean = x.mean(true, 2, 3);
        INDArray variance = x.var(false, 2, 3).reshape(3, 6, 1, 1);
        INDArray expected = x.sub(mean).div(Transforms.sqrt(variance.add(EPS)));
        assertEquals(0, expected.sub(y).amaxNumber().doubleValue(), 1e-12);
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void oneExampleNeverDependsOnTheOthers(Engine engine) {
        INDArray batch = Nd4j.randn(DataType.DOUBLE, 3, 6, 4, 4);
        INDArray inBatch = layer(6, 3, engine).forward(batch).get(NDArrayIndex.point(1)).dup();
        INDArray alone = layer(6, 3, engine).forward(batch.get(NDArrayIndex.interval(1, 2)).dup())
                .get(NDArrayIndex.point(0));
        INDArray changed = batch.dup();
        changed.get(NDArrayIndex.point(0)).muli(100).addi(7);
        changed.get(NDArrayIndex.point(2)).assign(-3);
        INDArray withOthersChanged = layer(6, 3, engine).forward(changed).get(NDArrayIndex.point(1));
        assertEquals(0, inBatch.sub(alone).amaxNumber().doubleValue(), 1e-12);
        assertEquals(0, inBatch.sub(withOthersChanged).amaxNumber().doubleValue(), 1e-12);
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void maskedTimeStepsStayOutOfTheStatisticsAndOutputZero(Engine engine) {
        for (TensorLayout layout : new TensorLayout[]{TensorLayout.NCW, TensorLayout.NWC}) {
            int steps = 6;
            int present = 4;
            INDArray x = layout == TensorLayout.NCW ? Nd4j.randn(DataType.DOUBLE, 2, 4, steps)
                    : Nd4j.randn(DataType.DOUBLE, 2, steps, 4);
            INDArray mask = Nd4j.ones(DataType.DOUBLE, 2, steps);
            mask.get(NDArrayIndex.point(0), NDArrayIndex.interval(present, steps)).assign(0);
            GroupNormHarness gn = layer(4, 2, engine, layout);
            INDArray y = gn.forward(x, mask).dup();
            INDArray dx = gn.backward(Nd4j.randn(DataType.DOUBLE, x.shape())).getSecond();

            INDArray truncated = layout == TensorLayout.NCW
                    ? x.get(NDArrayIndex.interval(0, 1), NDArrayIndex.all(), NDArrayIndex.interval(0, present)).dup()
                    : x.get(NDArrayIndex.interval(0, 1), NDArrayIndex.interval(0, present), NDArrayIndex.all()).dup();
            INDArray expectedPresent = layer(4, 2, engine, layout).forward(truncated);
            INDArray actualPresent = layout == TensorLayout.NCW
                    ? y.get(NDArrayIndex.interval(0, 1), NDArrayIndex.all(), NDArrayIndex.interval(0, present))
                    : y.get(NDArrayIndex.interval(0, 1), NDArrayIndex.interval(0, present), NDArrayIndex.all());
            assertEquals(0, expectedPresent.sub(actualPresent).amaxNumber().doubleValue(), 1e-12, layout + " present");
            INDArray maskedOut = layout == TensorLayout.NCW
                    ? y.get(NDArrayIndex.point(0), NDArrayIndex.all(), NDArrayIndex.interval(present, steps))
                    : y.get(NDArrayIndex.point(0), NDArrayIndex.interval(present, steps), NDArrayIndex.all());
            INDArray maskedGrad = layout == TensorLayout.NCW
                    ? dx.get(NDArrayIndex.point(0), NDArrayIndex.all(), NDArrayIndex.interval(present, steps))
                    : dx.get(NDArrayIndex.point(0), NDArrayIndex.interval(present, steps), NDArrayIndex.all());
            assertEquals(0, maskedOut.amaxNumber().doubleValue(), 0.0, layout + " masked output");
            assertEquals(0, maskedGrad.amaxNumber().doubleValue(), 0.0, layout + " masked gradient");
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void aFullyMaskedSequenceOutputsZeroNotNaN(Engine engine) {
        INDArray x = Nd4j.randn(DataType.DOUBLE, 2, 4, 3);
        INDArray mask = Nd4j.ones(DataType.DOUBLE, 2, 3);
        mask.getRow(1).assign(0);
        INDArray y = layer(4, 2, engine, TensorLayout.NCW).forward(x, mask);
        assertEquals(0, y.get(NDArrayIndex.point(1)).amaxNumber().doubleValue(), 0.0);
        assertTrue(y.get(NDArrayIndex.point(0)).amaxNumber().doubleValue() > 0);
    }

    /** Padding is never read: any finite value there (and, in the layer's engines, NaN or infinity) changes nothing. */
    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void paddingOfAnyValueChangesNothing(Engine engine) {
        INDArray x = Nd4j.randn(DataType.DOUBLE, 2, 4, 6);
        INDArray mask = Nd4j.createFromArray(new double[][]{{0, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 0}});
        INDArray dy = Nd4j.randn(DataType.DOUBLE, 2, 4, 6);
        GroupNormHarness reference = layer(4, 2, engine, TensorLayout.NCW);
        INDArray expected = reference.forward(padded(x, mask, 0), mask).dup();
        INDArray expectedDx = reference.backward(dy).getSecond().dup();
        java.util.List<Double> paddings = new java.util.ArrayList<>(java.util.List.of(1e4, 1e6, 1e30, -3e38));
        if (engine != Engine.SAMEDIFF) {
            paddings.addAll(java.util.List.of(Double.NaN, Double.POSITIVE_INFINITY));
        }
        for (double padding : paddings) {
            GroupNormHarness gn = layer(4, 2, engine, TensorLayout.NCW);
            INDArray y = gn.forward(padded(x, mask, padding), mask);
            assertEquals(0, expected.sub(y).amaxNumber().doubleValue(), 1e-12, "padding " + padding);
            assertEquals(0, expectedDx.sub(gn.backward(dy).getSecond()).amaxNumber().doubleValue(), 1e-12,
                    "padding " + padding);
        }
    }

    /** A mask means present or not: 0.5 is as present as 1 (DL4J's masks are 0/1; other values are not weights). */
    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void anyNonZeroMaskValueMeansPresent(Engine engine) {
        INDArray x = Nd4j.randn(DataType.DOUBLE, 2, 4, 6);
        INDArray binary = Nd4j.createFromArray(new double[][]{{0, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 0}});
        INDArray y = layer(4, 2, engine, TensorLayout.NCW).forward(x, binary).dup();
        INDArray half = layer(4, 2, engine, TensorLayout.NCW).forward(x, binary.mul(0.5));
        assertEquals(0, y.sub(half).amaxNumber().doubleValue(), 1e-12);
    }

    private static INDArray padded(INDArray x, INDArray mask, double padding) {
        INDArray out = x.dup();
        for (int n = 0; n < mask.size(0); n++) {
            for (int t = 0; t < mask.size(1); t++) {
                if (mask.getDouble(n, t) == 0) {
                    out.get(NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.point(t)).assign(padding);
                }
            }
        }
        return out;
    }

    private static GroupNormHarness layer(int channels, int groups, Engine engine) {
        return layer(channels, groups, engine, TensorLayout.NCHW);
    }

    private static GroupNormHarness layer(int channels, int groups, Engine engine, TensorLayout layout) {
        return new GroupNormHarness(new GroupNormalization.Builder().nIn(channels).groups(groups).eps(EPS)
                .dataFormat(layout).build(), DataType.DOUBLE, engine);
    }
}
