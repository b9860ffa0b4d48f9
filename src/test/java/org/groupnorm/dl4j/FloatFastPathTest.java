package org.groupnorm.dl4j;

import static org.groupnorm.dl4j.ReferenceTest.assertClose;
import static org.groupnorm.dl4j.ReferenceTest.gaussian;
import static org.groupnorm.dl4j.ReferenceTest.shapeLength;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Arrays;
import java.util.Random;
import java.util.function.IntConsumer;
import java.util.stream.Stream;
import org.deeplearning4j.nn.gradient.Gradient;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The CPU kernel's float32 paths (the ones networks run: SIMD loops, one-pass moments with a shift), channels-first
 * and channels-last, against {@link ReferenceGroupNorm} in double on the same float-rounded inputs, with whichever
 * loops this JVM uses (Maven runs the class with and without the Vector API module). The shapes are chosen for those
 * paths (float; channels first with rows of at least 16 positions; masked or not) and for their edges: rows or channel
 * counts that are not a whole number of SIMD steps or blocks, slabs long enough that the float partial sums are
 * flushed into double several times, fewer examples than threads (channels-last then splits an example's groups), and
 * data whose first 256 values are far from the slab's mean (the one-pass moments must then take their second, exact
 * pass).
 */
class FloatFastPathTest {

    static Stream<Arguments> shapes() {
        return Stream.of(
                Arguments.of(TensorLayout.NCHW, new long[]{2, 6, 20, 20}, 3),      // rows of 400: 1 block + tail
                Arguments.of(TensorLayout.NCW, new long[]{1, 2, 4200}, 1),         // slab of 8400: lanes flushed
                Arguments.of(TensorLayout.NCDHW, new long[]{2, 4, 3, 5, 7}, 2),    // rows of 105: a partial block
                Arguments.of(TensorLayout.NCHW, new long[]{3, 8, 4, 4}, 8),        // instance norm, rows of 16
                Arguments.of(TensorLayout.NHWC, new long[]{2, 20, 20, 6}, 3),      // rows of 6: no whole vector
                Arguments.of(TensorLayout.NWC, new long[]{1, 300, 40}, 4),         // 1 example: groups split
                Arguments.of(TensorLayout.NDHWC, new long[]{2, 3, 5, 7, 36}, 6),   // 105 rows: partial row block
                Arguments.of(TensorLayout.NHWC, new long[]{3, 4, 4, 8}, 8),        // instance norm
                Arguments.of(TensorLayout.NHWC, new long[]{2, 1, 1, 64}, 8));      // one position
    }

    @ParameterizedTest(name = "{0} {1} G={2}")
    @MethodSource("shapes")
    void matchesDoubleReference(TensorLayout layout, long[] shape, int groups) {
        Random random = new Random(shape.length * 17L + groups);
        int channels = (int) shape[layout.channelAxis()];
        double[] x = floats(gaussian(random, shapeLength(shape), 0.5, 2.0));
        double[] gamma = floats(gaussian(random, channels, 1.0, 0.5));
        double[] beta = floats(gaussian(random, channels, 0.0, 0.5));
        double[] dy = floats(gaussian(random, x.length, 0.0, 1.0));
        checkAgainstReference(layout, shape, groups, x, gamma, beta, dy, 1e-6);
    }

    @ParameterizedTest
    @EnumSource(value = TensorLayout.class, names = {"NCHW", "NHWC"})
    void firstBlockFarFromTheMeanTakesTheExactSecondPass(TensorLayout layout) {
        long[] shape = layout == TensorLayout.NCHW ? new long[]{1, 4, 48, 48} : new long[]{1, 48, 48, 4};
        Random random = new Random(11);
        double[] x = gaussian(random, shapeLength(shape), 1e3, 0.05);
        // The first 256 values in memory (whose mean is the shift) sit 40 std above the other 8960: the shift
        // is then about 6 std from the slab's mean, past the limit, so the moments are taken again around the mean.
        for (int i = 0; i < 256; i++) {
            x[i] += 2.0;
        }
        x = floats(x);
        double[] gamma = floats(gaussian(random, 4, 1.0, 0.5));
        double[] beta = floats(gaussian(random, 4, 0.0, 0.5));
        double[] dy = floats(gaussian(random, x.length, 0.0, 1.0));
        checkAgainstReference(layout, shape, 1, x, gamma, beta, dy, 1e-6);
    }

    @ParameterizedTest
    @EnumSource(value = TensorLayout.class, names = {"NCHW", "NHWC"})
    void meanFarLargerThanStdStaysAccurate(TensorLayout layout) {
        long[] shape = layout == TensorLayout.NCHW ? new long[]{2, 4, 8, 8} : new long[]{2, 8, 8, 4};
        Random random = new Random(5);
        double[] x = floats(gaussian(random, shapeLength(shape), -3e4, 1.0));
        double[] gamma = floats(gaussian(random, 4, 1.0, 0.5));
        double[] beta = floats(gaussian(random, 4, 0.0, 0.5));
        double[] dy = floats(gaussian(random, x.length, 0.0, 1.0));
        // Float32 rounding of the outputs (errors seen: 4e-7): the shift and the mean residual make |mean| >> std
        // cost no accuracy.
        checkAgainstReference(layout, shape, 2, x, gamma, beta, dy, 1e-6);
    }

    static Stream<Arguments> maskedShapes() {
        return Stream.of(
                Arguments.of(TensorLayout.NCW, new long[]{4, 8, 40}, 2),       // rows of 40 with every mask kind
                Arguments.of(TensorLayout.NCW, new long[]{4, 6, 33}, 3),       // compacted rows leave SIMD tails
                Arguments.of(TensorLayout.NWC, new long[]{4, 40, 8}, 2),       // blocks of whole examples
                Arguments.of(TensorLayout.NWC, new long[]{4, 33, 36}, 6),      // rows of 36: a vector and a tail
                Arguments.of(TensorLayout.NWC, new long[]{1, 300, 40}, 4));    // 1 example: groups split, strided
    }

    /**
     * Masked sequences (0 = padded) run the float32 paths on their present positions copied side by side, in every
     * kind of mask: padding at the end, at the start and in holes, none, and everywhere. The padded positions of x
     * and dy hold NaN, which must never be read; the output and dx there are exactly 0.
     */
    @ParameterizedTest(name = "{0} {1} G={2}")
    @MethodSource("maskedShapes")
    void maskedInputMatchesDoubleReference(TensorLayout layout, long[] shape, int groups) {
        Random random = new Random(shape.length * 31L + groups);
        int channels = (int) shape[layout.channelAxis()];
        double[] x = floats(gaussian(random, shapeLength(shape), 0.5, 2.0));
        double[] gamma = floats(gaussian(random, channels, 1.0, 0.5));
        double[] beta = floats(gaussian(random, channels, 0.0, 0.5));
        double[] dy = floats(gaussian(random, x.length, 0.0, 1.0));
        checkAgainstReference(layout, shape, groups, x, gamma, beta, dy, everyMaskKind(shape, layout), 1e-6);
    }

    /**
     * A fused activation on masked float32 input gives what the float64 path gives (the general path, in double),
     * to float32 rounding; padded positions output 0 and receive 0.
     */
    @ParameterizedTest
    @EnumSource(value = Activation.class, names = {"RELU", "LEAKYRELU", "SIGMOID", "TANH", "SWISH"})
    void maskedFusedActivationMatchesTheFloat64Path(Activation activation) {
        for (Arguments arguments : maskedShapes().toList()) {
            TensorLayout layout = (TensorLayout) arguments.get()[0];
            long[] shape = (long[]) arguments.get()[1];
            int groups = (int) arguments.get()[2];
            int channels = (int) shape[layout.channelAxis()];
            Random random = new Random(shape.length * 37L + groups);
            INDArray x = Nd4j.createFromArray(floats(gaussian(random, shapeLength(shape), 0.5, 2.0))).reshape(shape);
            INDArray dy = Nd4j.createFromArray(floats(gaussian(random, shapeLength(shape), 0.0, 1.0))).reshape(shape);
            INDArray gamma = Nd4j.createFromArray(floats(gaussian(random, channels, 1.0, 0.5)));
            INDArray beta = Nd4j.createFromArray(floats(gaussian(random, channels, 0.0, 0.5)));
            double[] mask = everyMaskKind(shape, layout);
            String where = activation + " " + layout + " " + Arrays.toString(shape);
            GroupNormalization conf = new GroupNormalization.Builder().nIn(channels).groups(groups)
                    .activation(activation).dataFormat(layout).build();
            Outputs expected = run(conf, DataType.DOUBLE, gamma, beta, x, dy, mask, layout);
            Outputs actual = run(conf, DataType.FLOAT, gamma, beta, x, dy, mask, layout);
            assertCloseRelative(expected.y(), actual.y(), 1e-6);
            assertCloseRelative(expected.dx(), actual.dx(), 1e-6);
            assertCloseRelative(expected.dGamma(), actual.dGamma(), 1e-6);
            assertCloseRelative(expected.dBeta(), actual.dBeta(), 1e-6);
            assertZeroWherePadded(actual.y(), shape, mask, layout, where + ": y");
            assertZeroWherePadded(actual.dx(), shape, mask, layout, where + ": dx");
        }
    }

    private record Outputs(double[] y, double[] dx, double[] dGamma, double[] dBeta) {
    }

    /** The layer in {@code type} on the kernel engine, with NaN at the padded positions of x and dy. */
    private static Outputs run(GroupNormalization conf, DataType type, INDArray gamma, INDArray beta, INDArray x,
                               INDArray dy, double[] mask, TensorLayout layout) {
        GroupNormHarness gn = new GroupNormHarness(conf.clone(), type, Engine.KERNEL).withParams(gamma, beta);
        INDArray maskArray = Nd4j.createFromArray(mask).reshape(x.size(0), mask.length / x.size(0));
        double[] y = doubles(gn.forward(padded(x, mask, layout, Double.NaN).castTo(type), maskArray));
        Pair<Gradient, INDArray> gradients = gn.backward(padded(dy, mask, layout, Double.NaN).castTo(type));
        return new Outputs(y, doubles(gradients.getSecond()), doubles(gradients.getFirst().getGradientFor("gamma")),
                doubles(gradients.getFirst().getGradientFor("beta")));
    }

    private static double[] doubles(INDArray values) {
        return values.castTo(DataType.DOUBLE).dup('c').data().asDouble();
    }

    /**
     * A [N * S] mask with, by example, padding at the end, padding at the start and in two holes, no padding, and
     * only padding (an example with one position gets the first kind, so never none present).
     */
    private static double[] everyMaskKind(long[] shape, TensorLayout layout) {
        int examples = (int) shape[0];
        int positions = (int) layout.spatialSize(shape);
        double[] mask = new double[examples * positions];
        for (int n = 0; n < examples; n++) {
            for (int s = 0; s < positions; s++) {
                boolean present = switch (n % 4) {
                    case 0 -> s < positions * 3 / 5;
                    case 1 -> s >= positions / 8 && (s < positions / 3 || s >= positions / 2)
                            && s != positions * 3 / 4;
                    case 2 -> true;
                    default -> false;
                };
                mask[n * positions + s] = present ? 1 : 0;
            }
        }
        return mask;
    }

    /** {@code values} with every padded position set to {@code padding}. */
    private static INDArray padded(INDArray values, double[] mask, TensorLayout layout, double padding) {
        return Nd4j.createFromArray(padded(values.dup('c').data().asDouble(), values.shape(), mask, layout, padding))
                .reshape(values.shape());
    }

    private static double[] padded(double[] values, long[] shape, double[] mask, TensorLayout layout,
                                   double padding) {
        double[] result = values.clone();
        if (mask != null) {
            forEachPadded(shape, mask, layout, i -> result[i] = padding);
        }
        return result;
    }

    /** Exactly 0 at every padded position (the reference's and the general path's value there). */
    private static void assertZeroWherePadded(double[] values, long[] shape, double[] mask, TensorLayout layout,
                                              String what) {
        forEachPadded(shape, mask, layout, i -> assertEquals(0.0, values[i], what + " at padded " + i));
    }

    /** Within {@code tolerance} times the largest expected magnitude (at least 1). */
    private static void assertCloseRelative(double[] expected, double[] actual, double tolerance) {
        assertClose(expected, Nd4j.createFromArray(actual), tolerance * scale(expected));
    }

    /** Runs {@code body} on the index of every element at a padded position. */
    private static void forEachPadded(long[] shape, double[] mask, TensorLayout layout, IntConsumer body) {
        int channels = (int) shape[layout.channelAxis()];
        int positions = (int) layout.spatialSize(shape);
        for (int n = 0; n < shape[0]; n++) {
            for (int c = 0; c < channels; c++) {
                for (int p = 0; p < positions; p++) {
                    if (mask[n * positions + p] == 0) {
                        body.accept(ReferenceGroupNorm.offset(layout, n, c, p, channels, positions));
                    }
                }
            }
        }
    }

    private static void checkAgainstReference(TensorLayout layout, long[] shape, int groups, double[] x,
                                              double[] gamma, double[] beta, double[] dy, double tolerance) {
        checkAgainstReference(layout, shape, groups, x, gamma, beta, dy, null, tolerance);
    }

    /**
     * The float32 layer (kernel engine) against the double reference; with a mask, the layer sees NaN at the padded
     * positions of x and dy and the reference zeros.
     */
    private static void checkAgainstReference(TensorLayout layout, long[] shape, int groups, double[] x,
                                              double[] gamma, double[] beta, double[] dy, double[] mask,
                                              double tolerance) {
        double eps = 1e-5;
        int channels = (int) shape[layout.channelAxis()];
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(channels).groups(groups)
                .eps(eps).dataFormat(layout).build(), DataType.FLOAT, Engine.KERNEL)
                .withParams(Nd4j.createFromArray(gamma), Nd4j.createFromArray(beta));
        INDArray maskArray = mask == null ? null : Nd4j.createFromArray(mask).reshape(shape[0], mask.length / shape[0]);
        INDArray y = gn.forward(Nd4j.createFromArray(padded(x, shape, mask, layout, Double.NaN)).reshape(shape)
                .castTo(DataType.FLOAT), maskArray);
        Pair<Gradient, INDArray> grads = gn.backward(Nd4j.createFromArray(padded(dy, shape, mask, layout, Double.NaN))
                .reshape(shape).castTo(DataType.FLOAT));
        x = padded(x, shape, mask, layout, 0);
        dy = padded(dy, shape, mask, layout, 0);

        assertClose(ReferenceGroupNorm.forward(x, shape, layout, groups, eps, gamma, beta, mask), y, tolerance);
        double[] dx = ReferenceGroupNorm.inputGradient(x, shape, layout, groups, eps, gamma, beta, mask, dy);
        assertClose(dx, grads.getSecond(), tolerance * scale(dx));
        double[] dGamma = ReferenceGroupNorm.gammaGradient(x, shape, layout, groups, eps, gamma, beta, mask, dy);
        assertClose(dGamma, grads.getFirst().getGradientFor("gamma"), tolerance * scale(dGamma));
        if (mask != null) {
            assertZeroWherePadded(doubles(y), shape, mask, layout, "y");
            assertZeroWherePadded(doubles(grads.getSecond()), shape, mask, layout, "dx");
        }
        // dbeta is a plain sum of dy: float32 partial sums of a few dozen terms added in double, so its error is a
        // few float roundings of the summed magnitudes, however many terms there are.
        double[] dBeta = betaGradient(layout, shape, dy);
        assertClose(dBeta, grads.getFirst().getGradientFor("beta"), 1e-6 * largestChannelSum(layout, shape, dy));
    }

    /** dbeta_c = sum of dy over every example and position of channel c. */
    private static double[] betaGradient(TensorLayout layout, long[] shape, double[] dy) {
        int channels = (int) shape[layout.channelAxis()];
        int positions = (int) layout.spatialSize(shape);
        double[] grad = new double[channels];
        for (int n = 0; n < shape[0]; n++) {
            for (int c = 0; c < channels; c++) {
                for (int p = 0; p < positions; p++) {
                    grad[c] += dy[ReferenceGroupNorm.offset(layout, n, c, p, channels, positions)];
                }
            }
        }
        return grad;
    }

    /** max over channels of the sum of |dy|: what a channel's dbeta sum can lose to rounding scales with it. */
    private static double largestChannelSum(TensorLayout layout, long[] shape, double[] dy) {
        double[] magnitudes = new double[dy.length];
        for (int i = 0; i < dy.length; i++) {
            magnitudes[i] = Math.abs(dy[i]);
        }
        return scale(betaGradient(layout, shape, magnitudes));
    }

    /** The largest magnitude in the array (at least 1): tolerances are relative to it. */
    private static double scale(double[] values) {
        double max = 1;
        for (double v : values) {
            max = Math.max(max, Math.abs(v));
        }
        return max;
    }

    private static double[] floats(double[] values) {
        double[] rounded = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            rounded[i] = (float) values[i];
        }
        return rounded;
    }
}
