package org.groupnorm.dl4j.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.nd4j.linalg.activations.Activation;
import org.groupnorm.dl4j.TensorLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The kernel's half-precision storage: its float16/bfloat16 conversions agree with ND4J's own casts bit for bit,
 * float16 channels-first GroupNorm is the float32 result rounded, and GroupNorm on bfloat16 arrays (which DL4J
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
     * float16 channels-first input runs the float32 loops on a float32 copy of each slab, so every output and
     * gradient is the float32 kernel's result on the widened input, rounded once: equal bit for bit. Every rank, a
     * mean far from 0 whose squares overflow half (std 300 around 1000), inputs near half's largest value, and a
     * length that leaves a tail after the last vector.
     */
    @ParameterizedTest
    @EnumSource(value = Activation.class, names = {"IDENTITY", "RELU", "LEAKYRELU", "SIGMOID", "TANH", "SWISH"})
    void float16ChannelsFirstIsTheFloat32ResultRounded(Activation activation) {
        FusedActivation fused = FusedActivation.of(activation.getActivationFunction());
        long[][] shapes = {{2, 8, 37}, {3, 12, 9, 7}, {2, 8, 3, 4, 5}};
        TensorLayout[] layouts = {TensorLayout.NCW, TensorLayout.NCHW, TensorLayout.NCDHW};
        double[][] meanAndStd = {{0, 1}, {1000, 300}, {20000, 8000}};
        for (int k = 0; k < shapes.length; k++) {
            for (double[] distribution : meanAndStd) {
                long[] shape = shapes[k];
                int channels = (int) shape[1];
                String where = activation + " " + layouts[k] + " mean " + distribution[0];
                INDArray x = Nd4j.randn(4L + k, shape).muli(distribution[1]).addi(distribution[0])
                        .castTo(DataType.HALF);
                INDArray dy = Nd4j.randn(5L + k, shape).castTo(DataType.HALF);
                INDArray gamma = Nd4j.linspace(-1.5, 1.5, channels, DataType.DOUBLE).castTo(DataType.HALF);
                INDArray beta = Nd4j.linspace(-1, 0.5, channels, DataType.DOUBLE).castTo(DataType.HALF);
                Outputs half = run(x, dy, gamma, beta, fused, layouts[k]);
                Outputs single = run(x.castTo(DataType.FLOAT), dy.castTo(DataType.FLOAT), gamma.castTo(DataType.FLOAT),
                        beta.castTo(DataType.FLOAT), fused, layouts[k]);
                assertEquals(0, half.y().isNaN().castTo(DataType.INT).sumNumber().intValue(), where + ": NaN in y");
                assertEquals(single.y().castTo(DataType.HALF), half.y(), where + ": y");
                assertEquals(single.dx().castTo(DataType.HALF), half.dx(), where + ": dx");
                assertEquals(single.dGamma().castTo(DataType.HALF), half.dGamma(), where + ": dgamma");
                assertEquals(single.dBeta().castTo(DataType.HALF), half.dBeta(), where + ": dbeta");
            }
        }
    }

    private record Outputs(INDArray y, INDArray dx, INDArray dGamma, INDArray dBeta) {
    }

    /** The kernel's forward and backward, G = C/4, all arrays of x's type. */
    private static Outputs run(INDArray x, INDArray dy, INDArray gamma, INDArray beta, FusedActivation activation,
                               TensorLayout layout) {
        int groups = (int) gamma.length() / 4;
        INDArray y = Nd4j.create(x.dataType(), x.shape());
        INDArray dx = Nd4j.create(x.dataType(), x.shape());
        INDArray dGamma = Nd4j.create(x.dataType(), gamma.length());
        INDArray dBeta = Nd4j.create(x.dataType(), gamma.length());
        GroupStats stats = GroupNormKernel.forward(x, gamma, beta, null, groups, 1e-5, activation, layout, y);
        GroupNormKernel.backward(x, gamma, beta, null, dy, groups, activation, layout, stats, dx, dGamma, dBeta);
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
