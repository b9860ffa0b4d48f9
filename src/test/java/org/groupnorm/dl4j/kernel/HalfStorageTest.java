package org.groupnorm.dl4j.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.ref.Reference;
import java.util.Random;
import org.groupnorm.dl4j.TensorLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The kernel's half-precision storage: its float16/bfloat16 conversions agree with ND4J's own casts bit for bit,
 * float16 GroupNorm is the float32 result rounded (masked or not), and GroupNorm on bfloat16 arrays (which DL4J
 * networks reject, but ND4J users have) is the float64 result rounded.
 */
class HalfStorageTest {

    @Test
    void everyHalfValueWidensExactlyAndRoundTrips() {
        for (int bits = 0; bits < 0x10000; bits++) {
            float value = Elements.halfToFloat((short) bits);
            if (Float.isNaN(value)) {
                assertTrue((bits & 0x7c00) == 0x7c00 && (bits & 0x3ff) != 0, "NaN from " + bits);
                continue;
            }
            assertEquals((short) bits, Elements.floatToHalf(value), "round trip of 0x" + Integer.toHexString(bits));
        }
    }

    @Test
    void floatToHalfRoundsAsNd4jDoes() {
        Random random = new Random(2);
        float[] values = new float[20_000];
        for (int i = 0; i < values.length; i++) {
            // Magnitudes from subnormal half to past half's range, both signs.
            values[i] = (float) ((random.nextBoolean() ? 1 : -1) * Math.pow(2, -26 + 44 * random.nextDouble()));
        }
        float[] edges = {0f, -0f, 65504f, 65519.99f, 65520f, 1e9f, 0x1p-24f, 0x1p-25f, 0x1.8p-24f, 0x1p-14f,
                1.0009765625f + 0x1p-11f, 2049f, 2051f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
        System.arraycopy(edges, 0, values, 0, edges.length);
        float[] nd4j = Nd4j.createFromArray(values).castTo(DataType.HALF).castTo(DataType.FLOAT).toFloatVector();
        float[] bf16 = Nd4j.createFromArray(values).castTo(DataType.BFLOAT16).castTo(DataType.FLOAT).toFloatVector();
        for (int i = 0; i < values.length; i++) {
            assertEquals(nd4j[i], Elements.halfToFloat(Elements.floatToHalf(values[i])), "half of " + values[i]);
            assertEquals(bf16[i], Float.intBitsToFloat((Elements.floatToBfloat16(values[i]) & 0xffff) << 16),
                    "bfloat16 of " + values[i]);
        }
    }

    /**
     * float16 input runs the float32 loops on float32 copies of each slab (channels first) or block (channels last),
     * so every output and gradient is the float32 kernel's result on the widened input, rounded once. Channels
     * first: equal bit for bit. Channels last: a block's rows lie side by side in the copy, so a smooth activation
     * runs over them as one run where the array's rows may be separate ones, which moves its last few elements
     * between the SIMD body and the scalar tail; the float32 values can differ in their last bits and the rounded
     * ones by one half-precision step. Every rank, a mean far from 0 whose squares overflow half (std 300 around
     * 1000), values near half's largest, rows that leave a tail after the last vector, and masked sequences (only
     * their present positions are copied).
     */
    @ParameterizedTest
    @EnumSource(value = Activation.class, names = {"IDENTITY", "RELU", "LEAKYRELU", "SIGMOID", "TANH", "SWISH"})
    void float16IsTheFloat32ResultRounded(Activation activation) {
        FusedActivation fused = FusedActivation.of(activation.getActivationFunction());
        long[][] shapes = {{2, 8, 37}, {3, 12, 9, 7}, {2, 8, 3, 4, 5}, {2, 37, 8}, {3, 9, 7, 12}, {2, 3, 4, 5, 24}};
        TensorLayout[] layouts = {TensorLayout.NCW, TensorLayout.NCHW, TensorLayout.NCDHW, TensorLayout.NWC,
                TensorLayout.NHWC, TensorLayout.NDHWC};
        double[][] meanAndStd = {{0, 1}, {1000, 300}, {20000, 8000}};
        for (int k = 0; k < shapes.length; k++) {
            for (double[] distribution : meanAndStd) {
                long[] shape = shapes[k];
                TensorLayout layout = layouts[k];
                int channels = (int) shape[layout.channelAxis()];
                String where = activation + " " + layout + " mean " + distribution[0];
                INDArray x = Nd4j.randn(4L + k, shape).muli(distribution[1]).addi(distribution[0])
                        .castTo(DataType.HALF);
                INDArray dy = Nd4j.randn(5L + k, shape).castTo(DataType.HALF);
                INDArray gamma = Nd4j.linspace(-1.5, 1.5, channels, DataType.DOUBLE).castTo(DataType.HALF);
                INDArray beta = Nd4j.linspace(-1, 0.5, channels, DataType.DOUBLE).castTo(DataType.HALF);
                // Sequences (rank 3) also with a mask; their padded positions hold NaN, which must never be read.
                for (INDArray mask : shape.length == 3 ? new INDArray[]{null, holesAndEnds(shape, layout)}
                        : new INDArray[]{null}) {
                    INDArray xs = mask == null ? x : nanWherePadded(x, mask, layout);
                    INDArray dys = mask == null ? dy : nanWherePadded(dy, mask, layout);
                    Outputs half = run(xs, dys, gamma, beta, mask, fused, layout, channels / 4);
                    Outputs single = run(xs.castTo(DataType.FLOAT), dys.castTo(DataType.FLOAT),
                            gamma.castTo(DataType.FLOAT), beta.castTo(DataType.FLOAT), mask, fused, layout,
                            channels / 4);
                    int steps = layout.channelsLast() ? 1 : 0;
                    String what = where + (mask == null ? "" : " masked");
                    assertWithinHalfSteps(single.y(), half.y(), steps, what + ": y");
                    assertWithinHalfSteps(single.dx(), half.dx(), steps, what + ": dx");
                    assertWithinHalfSteps(single.dGamma(), half.dGamma(), steps, what + ": dgamma");
                    assertWithinHalfSteps(single.dBeta(), half.dBeta(), steps, what + ": dbeta");
                }
            }
        }
    }

    /** A [N, S] mask: example 0 padded at its end and in one hole, example 1 at its start. */
    private static INDArray holesAndEnds(long[] shape, TensorLayout layout) {
        int positions = (int) layout.spatialSize(shape);
        INDArray mask = Nd4j.ones(DataType.FLOAT, shape[0], positions);
        for (int s = 0; s < positions; s++) {
            if (s >= positions * 2 / 3 || s == positions / 4) {
                mask.putScalar(0, s, 0);
            }
            if (s < positions / 5) {
                mask.putScalar(1, s, 0);
            }
        }
        return mask;
    }

    /** {@code values} (rank 3) with NaN at every padded position of {@code mask}. */
    private static INDArray nanWherePadded(INDArray values, INDArray mask, TensorLayout layout) {
        INDArray result = values.dup();
        for (int n = 0; n < mask.size(0); n++) {
            for (int s = 0; s < mask.size(1); s++) {
                if (mask.getDouble(n, s) == 0) {
                    for (int c = 0; c < values.size(layout.channelAxis()); c++) {
                        result.putScalar(layout.channelsLast() ? new long[]{n, s, c} : new long[]{n, c, s},
                                Double.NaN);
                    }
                }
            }
        }
        return result;
    }

    /**
     * A channels-last volume whose 16-channel blocks would pass the float32 copies' limit (327,680
     * positions): its float16 blocks are cut narrower than the float32 path's, down to a few groups, and still give
     * the float32 result rounded.
     */
    @Test
    void float16ChannelsLastVolumeInNarrowBlocksIsTheFloat32ResultRounded() {
        long[] shape = {1, 40, 64, 128, 32};
        INDArray x = Nd4j.randn(6L, shape).muli(3).addi(50).castTo(DataType.HALF);
        INDArray dy = Nd4j.randn(7L, shape).castTo(DataType.HALF);
        INDArray gamma = Nd4j.linspace(-1.5, 1.5, 32, DataType.DOUBLE).castTo(DataType.HALF);
        INDArray beta = Nd4j.linspace(-1, 0.5, 32, DataType.DOUBLE).castTo(DataType.HALF);
        FusedActivation swish = FusedActivation.of(Activation.SWISH.getActivationFunction());
        Outputs half = run(x, dy, gamma, beta, null, swish, TensorLayout.NDHWC, 32);
        Outputs single = run(x.castTo(DataType.FLOAT), dy.castTo(DataType.FLOAT), gamma.castTo(DataType.FLOAT),
                beta.castTo(DataType.FLOAT), null, swish, TensorLayout.NDHWC, 32);
        assertWithinHalfSteps(single.y(), half.y(), 1, "y");
        assertWithinHalfSteps(single.dx(), half.dx(), 1, "dx");
        assertWithinHalfSteps(single.dGamma(), half.dGamma(), 1, "dgamma");
        assertWithinHalfSteps(single.dBeta(), half.dBeta(), 1, "dbeta");
    }

    /**
     * Every element of {@code actual} (float16) is the float32 value rounded to half, or at most {@code steps}
     * float16 values away from it; and finite.
     */
    private static void assertWithinHalfSteps(INDArray single, INDArray actual, int steps, String what) {
        short[] expected = toHalfBits(single.castTo(DataType.HALF));
        short[] bits = toHalfBits(actual);
        for (int i = 0; i < bits.length; i++) {
            float value = Elements.halfToFloat(bits[i]);
            if (!Float.isFinite(value) || Math.abs(ordinal(bits[i]) - ordinal(expected[i])) > steps) {
                fail(what + " at " + i + ": " + value + " where the float32 result is "
                        + single.reshape(-1).getFloat(i));
            }
        }
    }

    private static short[] toHalfBits(INDArray half) {
        short[] bits = new short[(int) half.length()];
        INDArray contiguous = half.dup('c');
        Elements.bytes(contiguous).asShortBuffer().get(bits);
        Reference.reachabilityFence(contiguous);   // the buffer does not keep the array's memory alive
        return bits;
    }

    /** A float16 value's position on the number line, counted in float16 steps (-0 and 0 are the same). */
    private static int ordinal(short bits) {
        int magnitude = bits & 0x7fff;
        return (bits & 0x8000) != 0 ? -magnitude : magnitude;
    }

    private record Outputs(INDArray y, INDArray dx, INDArray dGamma, INDArray dBeta) {
    }

    /**
     * The kernel's forward and backward, all arrays of x's type. The outputs start as NaN: the kernel must write
     * every element (padded positions too, as a reused workspace holds whatever was there).
     */
    private static Outputs run(INDArray x, INDArray dy, INDArray gamma, INDArray beta, INDArray mask,
                               FusedActivation activation, TensorLayout layout, int groups) {
        INDArray y = Nd4j.create(x.dataType(), x.shape()).assign(Double.NaN);
        INDArray dx = Nd4j.create(x.dataType(), x.shape()).assign(Double.NaN);
        INDArray dGamma = Nd4j.create(x.dataType(), gamma.length()).assign(Double.NaN);
        INDArray dBeta = Nd4j.create(x.dataType(), gamma.length()).assign(Double.NaN);
        GroupStats stats = GroupNormKernel.forward(x, gamma, beta, mask, groups, 1e-5, activation, layout, y);
        GroupNormKernel.backward(x, gamma, beta, mask, dy, groups, activation, layout, stats, dx, dGamma, dBeta);
        return new Outputs(y, dx, dGamma, dBeta);
    }

    @Test
    void bfloat16GroupNormIsTheFloat64ResultRounded() {
        long[] shape = {2, 16, 12, 8};
        INDArray x = Nd4j.randn(3L, shape).muli(50).addi(200).castTo(DataType.BFLOAT16);
        INDArray gamma = Nd4j.linspace(0.5, 1.5, 8, DataType.DOUBLE);
        INDArray beta = Nd4j.linspace(-1, 1, 8, DataType.DOUBLE);
        INDArray y = Nd4j.create(DataType.BFLOAT16, shape);
        GroupNormKernel.forward(x, gamma.castTo(DataType.BFLOAT16), beta.castTo(DataType.BFLOAT16), null, 4, 1e-5,
                FusedActivation.IDENTITY, TensorLayout.NHWC, y);
        INDArray expected = Nd4j.create(DataType.DOUBLE, shape);
        GroupNormKernel.forward(x.castTo(DataType.DOUBLE), gamma.castTo(DataType.BFLOAT16).castTo(DataType.DOUBLE),
                beta.castTo(DataType.BFLOAT16).castTo(DataType.DOUBLE), null, 4, 1e-5, FusedActivation.IDENTITY, TensorLayout.NHWC,
                expected);
        // bfloat16 keeps 8 significant bits: rounding moves a value by at most 2^-8 of its magnitude.
        double error = y.castTo(DataType.DOUBLE).subi(expected).amaxNumber().doubleValue();
        assertTrue(error <= expected.amaxNumber().doubleValue() / 256, "error " + error);
    }
}
