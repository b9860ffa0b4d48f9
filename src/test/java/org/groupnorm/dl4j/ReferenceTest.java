package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import java.util.stream.Stream;
import org.deeplearning4j.nn.gradient.Gradient;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Both engines agree with {@link ReferenceGroupNorm} (plain loops in double from the formula; its gradients by
 * finite differences) on random shapes of every layout, including C/G not a power of two and batch 1, and keep
 * float32 accurate where naive formulas fail.
 */
class ReferenceTest {

    static Stream<Arguments> randomShapes() {
        Random random = new Random(7);
        return Stream.of(TensorLayout.values()).flatMap(layout -> Stream.of(Engine.KERNEL, Engine.PORTABLE, Engine.SAMEDIFF)
                .flatMap(engine -> Stream.of(1, 3).map(batch -> {
                    int groups = 1 + random.nextInt(3);           // 1..3
                    int perGroup = new int[]{1, 3, 5}[random.nextInt(3)];
                    long[] shape = new long[layout.rank()];
                    shape[0] = batch;
                    for (int axis = 1; axis < shape.length; axis++) {
                        shape[axis] = axis == layout.channelAxis() ? (long) groups * perGroup
                                : 1 + random.nextInt(layout.rank() == 5 ? 3 : 5);
                    }
                    return Arguments.of(layout, engine, shape, groups);
                })));
    }

    @ParameterizedTest(name = "{0} {1} {2} G={3}")
    @MethodSource("randomShapes")
    void matchesPlainDoubleReference(TensorLayout layout, Engine engine, long[] shape, int groups) {
        Random random = new Random(shape.length * 31L + groups);
        int channels = (int) shape[layout.channelAxis()];
        double[] x = gaussian(random, shapeLength(shape), 0.5, 2.0);
        double[] gamma = gaussian(random, channels, 1.0, 0.5);
        double[] beta = gaussian(random, channels, 0.0, 0.5);
        double[] dy = gaussian(random, x.length, 0.0, 1.0);
        double eps = 1e-5;

        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(channels).groups(groups)
                .eps(eps).dataFormat(layout).build(), DataType.DOUBLE, engine)
                .withParams(Nd4j.createFromArray(gamma), Nd4j.createFromArray(beta));
        INDArray y = gn.forward(Nd4j.createFromArray(x).reshape(shape));
        Pair<Gradient, INDArray> grads = gn.backward(Nd4j.createFromArray(dy).reshape(shape));

        assertClose(ReferenceGroupNorm.forward(x, shape, layout, groups, eps, gamma, beta, null), y, 1e-12);
        assertClose(ReferenceGroupNorm.inputGradient(x, shape, layout, groups, eps, gamma, beta, null, dy),
                grads.getSecond(), 1e-6);
        assertClose(ReferenceGroupNorm.gammaGradient(x, shape, layout, groups, eps, gamma, beta, null, dy),
                grads.getFirst().getGradientFor("gamma"), 1e-6);
    }

    static Stream<Arguments> scaleOrCenterAlone() {
        return Stream.of(Engine.KERNEL, Engine.PORTABLE, Engine.SAMEDIFF).flatMap(engine -> Stream.of(true, false)
                .flatMap(scale -> Stream.of(true, false).map(masked -> Arguments.of(engine, scale, masked))));
    }

    @ParameterizedTest(name = "{0} scale={1} masked={2}")
    @MethodSource("scaleOrCenterAlone")
    void scaleOrCenterAloneMatchesTheReference(Engine engine, boolean scale, boolean masked) {
        long[] shape = {2, 6, 5};
        Random random = new Random(scale ? 11 : 12);
        double[] x = gaussian(random, shapeLength(shape), 0.5, 2.0);
        double[] dy = gaussian(random, x.length, 0.0, 1.0);
        double[] gamma = scale ? gaussian(random, 6, 1.0, 0.5) : null;
        double[] beta = scale ? null : gaussian(random, 6, 0.0, 0.5);
        double[] mask = masked ? new double[]{1, 1, 1, 0, 0, 1, 1, 1, 1, 1} : null;
        GroupNormalization conf = new GroupNormalization.Builder().nIn(6).groups(3).scale(scale).center(!scale)
                .dataFormat(TensorLayout.NCW).build();
        GroupNormHarness gn = new GroupNormHarness(conf, DataType.DOUBLE, engine);
        gn.layer.setParam(scale ? "gamma" : "beta", Nd4j.createFromArray(scale ? gamma : beta));

        INDArray y = gn.forward(Nd4j.createFromArray(x).reshape(shape),
                masked ? Nd4j.createFromArray(mask).reshape(2, 5) : null);
        Pair<Gradient, INDArray> grads = gn.backward(Nd4j.createFromArray(dy).reshape(shape));

        assertEquals(java.util.Set.of(scale ? "gamma" : "beta"), grads.getFirst().gradientForVariable().keySet());
        assertClose(ReferenceGroupNorm.forward(x, shape, TensorLayout.NCW, 3, 1e-5, gamma, beta, mask), y, 1e-12);
        assertClose(ReferenceGroupNorm.inputGradient(x, shape, TensorLayout.NCW, 3, 1e-5, gamma, beta, mask, dy),
                grads.getSecond(), 1e-6);
        if (scale) {
            assertClose(ReferenceGroupNorm.gammaGradient(x, shape, TensorLayout.NCW, 3, 1e-5, gamma, null, mask, dy),
                    grads.getFirst().getGradientFor("gamma"), 1e-6);
        } else {
            double[] dBeta = new double[6];   // dL/dbeta_c: dy summed over the present positions of channel c
            for (int n = 0; n < 2; n++) {
                for (int c = 0; c < 6; c++) {
                    for (int t = 0; t < 5; t++) {
                        dBeta[c] += (mask == null ? 1 : mask[n * 5 + t]) * dy[(n * 6 + c) * 5 + t];
                    }
                }
            }
            assertClose(dBeta, grads.getFirst().getGradientFor("beta"), 1e-12);
        }
    }

    /**
     * Half precision input: statistics in float32, so inputs whose squares overflow half (|x| &gt; 256) normalize
     * fine; the result is the float32 result rounded to half.
     */
    @ParameterizedTest
    @EnumSource(names = {"AUTO", "PORTABLE", "SAMEDIFF"})
    void halfPrecisionMatchesFloatToHalfPrecision(Engine engine) {
        for (double std : new double[]{1, 100, 300}) {
            long[] shape = {1, 8, 64, 64};
            double[] x = gaussian(new Random(5), shapeLength(shape), 10.0, std);
            double[] gamma = gaussian(new Random(6), 8, 1.0, 0.5);
            double[] beta = gaussian(new Random(7), 8, 0.0, 0.5);
            GroupNormalization conf = new GroupNormalization.Builder().nIn(8).groups(4).build();
            INDArray half = new GroupNormHarness(conf, DataType.HALF, engine)
                    .withParams(Nd4j.createFromArray(gamma), Nd4j.createFromArray(beta))
                    .forward(Nd4j.createFromArray(x).reshape(shape).castTo(DataType.HALF));
            double[] expected = ReferenceGroupNorm.forward(Nd4j.createFromArray(x).castTo(DataType.HALF)
                    .castTo(DataType.DOUBLE).data().asDouble(), shape, TensorLayout.NCHW, 4, 1e-5, gamma, beta, null);
            assertEquals(DataType.HALF, half.dataType());
            // Outputs are within about 4 of 0; half has 11 significant bits: 2^-11 * 4 ~ 2e-3, plus gamma's rounding.
            assertClose(expected, half, 4e-3);
        }
    }

    /**
     * Half precision backward, channels first and last: dx, dgamma and dbeta are the float64 results for the same
     * half-rounded input, rounded to half (the float64 path is held to the plain reference by the other tests).
     * Input std 300 around 1000: squares far past half's range, which statistics in half precision cannot survive.
     */
    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE"})
    void halfPrecisionGradientsMatchFloat64ToHalfPrecision(Engine engine) {
        for (TensorLayout layout : new TensorLayout[]{TensorLayout.NCHW, TensorLayout.NHWC}) {
            long[] shape = layout == TensorLayout.NCHW ? new long[]{2, 8, 16, 16} : new long[]{2, 16, 16, 8};
            INDArray x = Nd4j.createFromArray(gaussian(new Random(8), shapeLength(shape), 1000.0, 300.0))
                    .reshape(shape).castTo(DataType.HALF);
            INDArray dy = Nd4j.createFromArray(gaussian(new Random(9), shapeLength(shape), 0.0, 1.0))
                    .reshape(shape).castTo(DataType.HALF);
            INDArray gamma = Nd4j.createFromArray(gaussian(new Random(10), 8, 1.0, 0.5)).castTo(DataType.HALF);
            INDArray beta = Nd4j.createFromArray(gaussian(new Random(11), 8, 0.0, 0.5)).castTo(DataType.HALF);
            GroupNormalization conf = new GroupNormalization.Builder().nIn(8).groups(4).dataFormat(layout).build();
            GroupNormHarness half = new GroupNormHarness(conf, DataType.HALF, engine).withParams(gamma, beta);
            INDArray y = half.forward(x);
            Pair<Gradient, INDArray> grads = half.backward(dy);
            GroupNormHarness exact = new GroupNormHarness(conf, DataType.DOUBLE, Engine.KERNEL)
                    .withParams(gamma, beta);
            INDArray expectedY = exact.forward(x.castTo(DataType.DOUBLE));
            Pair<Gradient, INDArray> expected = exact.backward(dy.castTo(DataType.DOUBLE));
            String where = engine + " " + layout;
            assertEquals(DataType.HALF, grads.getSecond().dataType(), where);
            assertWithinRelative(expectedY, y, HALF_RELATIVE, where + " y");
            assertWithinRelative(expected.getSecond(), grads.getSecond(), HALF_RELATIVE, where + " dx");
            for (String param : new String[]{"gamma", "beta"}) {
                assertWithinRelative(expected.getFirst().getGradientFor(param),
                        grads.getFirst().getGradientFor(param), HALF_RELATIVE, where + " d" + param);
            }
        }
    }

    /** Half keeps 11 significant bits: a result off by at most ~2^-11 of its magnitude, 2^-10 with slack. */
    private static final double HALF_RELATIVE = 1.0 / 1024;

    /** |actual - expected| <= relative * max|expected| everywhere, and nothing non-finite. */
    private static void assertWithinRelative(INDArray expected, INDArray actual, double relative, String what) {
        INDArray a = actual.castTo(DataType.DOUBLE);
        assertEquals(0, a.isInfinite().castTo(DataType.INT).sumNumber().intValue() + a.isNaN().castTo(DataType.INT)
                .sumNumber().intValue(), what + ": non-finite values");
        double scale = expected.amaxNumber().doubleValue();
        double error = a.sub(expected.reshape(a.shape())).amaxNumber().doubleValue();
        assertTrue(error <= relative * scale, what + ": error " + error + " > " + relative + " * " + scale);
    }

    /**
     * One group of 8M float32 elements: sums in float lose digits at this size (ND4J's own sum reductions put the
     * output 1e-2 off); every engine's statistics and gradient sums must not. Against the float64 kernel on the same
     * inputs (held to the plain reference by the other tests).
     */
    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE"})
    void float32StaysAccurateInAGroupOfMillions(Engine engine) {
        long[] shape = {1, 2, 2048, 2048};
        INDArray x = Nd4j.createFromArray(gaussian(new Random(12), shapeLength(shape), 10.0, 2.0)).reshape(shape)
                .castTo(DataType.FLOAT);
        INDArray dy = Nd4j.createFromArray(gaussian(new Random(13), shapeLength(shape), 0.5, 1.0)).reshape(shape)
                .castTo(DataType.FLOAT);
        INDArray gamma = Nd4j.createFromArray(1.5f, 0.5f);
        INDArray beta = Nd4j.createFromArray(0.25f, -1f);
        GroupNormalization conf = new GroupNormalization.Builder().nIn(2).groups(1).build();
        GroupNormHarness single = new GroupNormHarness(conf, DataType.FLOAT, engine).withParams(gamma, beta);
        INDArray y = single.forward(x).dup();
        Pair<Gradient, INDArray> grads = single.backward(dy);
        GroupNormHarness exact = new GroupNormHarness(conf, DataType.DOUBLE, Engine.KERNEL).withParams(gamma, beta);
        INDArray expectedY = exact.forward(x.castTo(DataType.DOUBLE));
        Pair<Gradient, INDArray> expected = exact.backward(dy.castTo(DataType.DOUBLE));
        // y and dx: a few float roundings of values within about 10 of 0. The parameter gradients are sums over 4M
        // elements: relative to their size, float accumulation would be off by 1e-4 and more.
        assertWithinRelative(expectedY, y, 2e-7, engine + " y");
        assertWithinRelative(expected.getSecond(), grads.getSecond(), 2e-6, engine + " dx");
        for (String param : new String[]{"gamma", "beta"}) {
            assertWithinRelative(expected.getFirst().getGradientFor(param), grads.getFirst().getGradientFor(param),
                    1e-6, engine + " d" + param);
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void float32StaysAccurateWhenMeanDwarfsStd(Engine engine) {
        long[] shape = {2, 8, 16, 16};
        double[] x = gaussian(new Random(3), shapeLength(shape), 1e3, 1.0);
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(8).groups(4).build(),
                DataType.FLOAT, engine);
        INDArray y = gn.forward(Nd4j.createFromArray(x).reshape(shape).castTo(DataType.FLOAT));
        double[] expected = ReferenceGroupNorm.forward(toFloatPrecision(x), shape, TensorLayout.NCHW, 4, 1e-5,
                null, null, null);
        // Outputs are ~N(0,1); the naive E[x^2]-E[x]^2 in float32 is off by O(1) here.
        assertClose(expected, y, 2e-3);
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void constantInputReturnsBetaExactly(Engine engine) {
        // 3x3 rows take the kernel's general path, 8x8 float32 rows its SIMD fast path.
        for (long side : new long[]{3, 8}) {
        for (DataType type : new DataType[]{DataType.FLOAT, DataType.DOUBLE}) {
            double[] beta = {0.1, -2.5, 3.0, 7.25};
            GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(4).groups(2).build(),
                    type, engine).withParams(Nd4j.createFromArray(1.5, 2.0, -1.0, 0.5), Nd4j.createFromArray(beta));
            INDArray y = gn.forward(Nd4j.valueArrayOf(new long[]{2, 4, side, side}, 1000.1).castTo(type));
            for (int c = 0; c < 4; c++) {
                INDArray channel = y.get(org.nd4j.linalg.indexing.NDArrayIndex.all(),
                        org.nd4j.linalg.indexing.NDArrayIndex.point(c));
                assertEquals(0.0, channel.sub(Nd4j.valueArrayOf(channel.shape(), beta[c], type))
                        .amaxNumber().doubleValue(), 0.0, type + " " + side + "x" + side + " channel " + c);
            }
        }
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void nanStaysInsideItsOwnGroup(Engine engine) {
        for (long side : new long[]{3, 8}) {   // the kernel's general path, then its SIMD fast path
        INDArray x = Nd4j.rand(DataType.FLOAT, 2, 4, side, side);
        x.putScalar(new long[]{1, 2, 0, 0}, Float.NaN);   // example 1, group 1 (channels 2-3)
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(4).groups(2).build(),
                DataType.FLOAT, engine);
        INDArray y = gn.forward(x);
        for (int n = 0; n < 2; n++) {
            for (int c = 0; c < 4; c++) {
                boolean poisoned = n == 1 && c >= 2;
                INDArray slab = y.get(org.nd4j.linalg.indexing.NDArrayIndex.point(n),
                        org.nd4j.linalg.indexing.NDArrayIndex.point(c));
                boolean hasNaN = Nd4j.getExecutioner().exec(new org.nd4j.linalg.api.ops.impl.reduce.longer
                        .MatchCondition(slab, org.nd4j.linalg.indexing.conditions.Conditions.isNan()))
                        .getInt(0) > 0;
                assertEquals(poisoned, hasNaN, side + "x" + side + " example " + n + " channel " + c);
            }
        }
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"KERNEL", "PORTABLE", "SAMEDIFF"})
    void minibatchAndSpatialSizesMayChangeBetweenCalls(Engine engine) {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(6).groups(3).build(),
                DataType.DOUBLE, engine);
        for (long[] shape : new long[][]{{4, 6, 5, 5}, {1, 6, 5, 5}, {2, 6, 9, 3}, {3, 6, 1, 1}}) {
            double[] x = gaussian(new Random(shape[0]), shapeLength(shape), 0, 1);
            INDArray y = gn.forward(Nd4j.createFromArray(x).reshape(shape));
            assertArrayEquals(shape, y.shape());
            assertClose(ReferenceGroupNorm.forward(x, shape, TensorLayout.NCHW, 3, 1e-5, null, null, null), y,
                    1e-12);
        }
    }

    static double[] gaussian(Random random, int length, double mean, double std) {
        double[] values = new double[length];
        for (int i = 0; i < length; i++) {
            values[i] = mean + std * random.nextGaussian();
        }
        return values;
    }

    static int shapeLength(long[] shape) {
        long length = 1;
        for (long size : shape) {
            length *= size;
        }
        return (int) length;
    }

    private static double[] toFloatPrecision(double[] values) {
        double[] rounded = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            rounded[i] = (float) values[i];
        }
        return rounded;
    }

    static void assertClose(double[] expected, INDArray actual, double tolerance) {
        double[] got = actual.castTo(DataType.DOUBLE).dup('c').data().asDouble();
        assertEquals(expected.length, got.length, "length");
        double max = 0;
        for (int i = 0; i < got.length; i++) {
            max = Math.max(max, Math.abs(expected[i] - got[i]));
        }
        assertTrue(max <= tolerance, "max abs error " + max + " > " + tolerance);
    }
}
