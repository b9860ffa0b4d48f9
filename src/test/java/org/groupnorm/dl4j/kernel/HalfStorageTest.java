package org.groupnorm.dl4j.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.groupnorm.dl4j.TensorLayout;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The kernel's half-precision storage: its float16/bfloat16 conversions agree with ND4J's own casts bit for bit, and
 * GroupNorm on bfloat16 arrays (which DL4J networks reject, but ND4J users have) is the float64 result rounded.
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
