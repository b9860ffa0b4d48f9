package org.groupnorm.dl4j.kernel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Bulk reads and writes between a c-contiguous host array and a {@code double[]} work buffer: the general path
 * computes in double whatever the storage type, and reads and writes only through here. Half-precision values are
 * widened exactly on read and rounded to nearest-even on write (out of range: infinity), as ND4J's own casts do; the
 * binary16 conversions here are the definition the loop sets' whole-vector ones ({@link FloatLoops#widenHalves},
 * {@link FloatLoops#narrowToHalves}) are tested against.
 */
abstract class Elements {

    /** Every binary16 value as a float, indexed by its bits: widening is one table lookup per element. */
    private static final float[] HALF_VALUES = halfValues();

    /** Whether the kernel can address arrays of this type. */
    static boolean supports(DataType type) {
        return type == DataType.FLOAT || type == DataType.DOUBLE || type == DataType.HALF
                || type == DataType.BFLOAT16;
    }

    /** A view of a c-contiguous array in host memory (the CPU backend's arrays). */
    static Elements of(INDArray array) {
        switch (array.dataType()) {
            case FLOAT:
                return new Floats(floats(array));
            case DOUBLE:
                return new Doubles(bytes(array).asDoubleBuffer());
            case HALF:
                return new Halves(bytes(array).asShortBuffer(), false);
            case BFLOAT16:
                return new Halves(bytes(array).asShortBuffer(), true);
            default:
                throw new IllegalArgumentException("GroupNorm CPU kernel: no support for " + array.dataType());
        }
    }

    /** The elements of a c-contiguous FLOAT array in host memory, as a buffer over that memory (no copy). */
    static FloatBuffer floats(INDArray array) {
        return bytes(array).asFloatBuffer();
    }

    /** The bytes of a c-contiguous array in host memory, in native order, as a buffer over that memory (no copy). */
    static ByteBuffer bytes(INDArray array) {
        Pointer first = array.data().addressPointer();   // already at the array's first element
        long bytes = array.length() * array.dataType().width();
        return new BytePointer(first).capacity(bytes).limit(bytes).asByteBuffer().order(ByteOrder.nativeOrder());
    }

    /** Copies {@code count} elements starting at {@code start} into {@code dst[dstOffset...]}. */
    abstract void read(int start, double[] dst, int dstOffset, int count);

    /** Copies {@code src[srcOffset...]} into {@code count} elements starting at {@code start}. */
    abstract void write(int start, double[] src, int srcOffset, int count);

    private static final class Floats extends Elements {
        private final FloatBuffer buffer;

        Floats(FloatBuffer buffer) {
            this.buffer = buffer;
        }

        @Override
        void read(int start, double[] dst, int dstOffset, int count) {
            float[] staging = Scratch.floats(Scratch.FloatSlot.STAGING, count);
            buffer.get(start, staging, 0, count);
            for (int i = 0; i < count; i++) {
                dst[dstOffset + i] = staging[i];
            }
        }

        @Override
        void write(int start, double[] src, int srcOffset, int count) {
            float[] staging = Scratch.floats(Scratch.FloatSlot.STAGING, count);
            for (int i = 0; i < count; i++) {
                staging[i] = (float) src[srcOffset + i];
            }
            buffer.put(start, staging, 0, count);
        }
    }

    private static final class Doubles extends Elements {
        private final DoubleBuffer buffer;

        Doubles(DoubleBuffer buffer) {
            this.buffer = buffer;
        }

        @Override
        void read(int start, double[] dst, int dstOffset, int count) {
            buffer.get(start, dst, dstOffset, count);
        }

        @Override
        void write(int start, double[] src, int srcOffset, int count) {
            buffer.put(start, src, srcOffset, count);
        }
    }

    /** IEEE binary16 or bfloat16 storage, read and written in bulk through a staging array. */
    private static final class Halves extends Elements {
        private final ShortBuffer buffer;
        private final boolean brain;

        Halves(ShortBuffer buffer, boolean brain) {
            this.buffer = buffer;
            this.brain = brain;
        }

        @Override
        void read(int start, double[] dst, int dstOffset, int count) {
            short[] staging = Scratch.shorts(count);
            buffer.get(start, staging, 0, count);
            for (int i = 0; i < count; i++) {
                dst[dstOffset + i] = brain ? Float.intBitsToFloat((staging[i] & 0xffff) << 16)
                        : halfValue(staging[i]);
            }
        }

        @Override
        void write(int start, double[] src, int srcOffset, int count) {
            short[] staging = Scratch.shorts(count);
            for (int i = 0; i < count; i++) {
                float value = (float) src[srcOffset + i];
                staging[i] = brain ? floatToBfloat16(value) : floatToHalf(value);
            }
            buffer.put(start, staging, 0, count);
        }
    }

    /** IEEE binary16 to float (exact): {@link #halfToFloat} through a table. */
    static float halfValue(short half) {
        return HALF_VALUES[half & 0xffff];
    }

    private static float[] halfValues() {
        float[] values = new float[1 << 16];
        for (int bits = 0; bits < values.length; bits++) {
            values[bits] = halfToFloat((short) bits);
        }
        return values;
    }

    /** IEEE binary16 to float (exact). */
    static float halfToFloat(short half) {
        int bits = half & 0xffff;
        int sign = (bits & 0x8000) << 16;
        int exponent = (bits >>> 10) & 0x1f;
        int mantissa = bits & 0x3ff;
        if (exponent == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mantissa << 13));   // infinity or NaN
        }
        if (exponent == 0) {
            float subnormal = mantissa * 0x1p-24f;
            return sign == 0 ? subnormal : -subnormal;
        }
        return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }

    /** Float to IEEE binary16, rounding to nearest even; beyond the largest half (65504) by half a step: infinity. */
    static short floatToHalf(float value) {
        int bits = Float.floatToRawIntBits(value);
        int sign = (bits >>> 16) & 0x8000;
        int magnitude = bits & 0x7fffffff;
        if (magnitude > 0x7f800000) {
            return (short) (sign | 0x7e00);                                     // NaN
        }
        if (magnitude >= 0x477ff000) {
            return (short) (sign | 0x7c00);                                     // rounds past 65504: infinity
        }
        if (magnitude < 0x38800000) {                                           // below 2^-14: subnormal or zero
            return (short) (sign | (int) Math.rint(Float.intBitsToFloat(magnitude) * 0x1p24f));
        }
        int half = (((magnitude >>> 23) - 112) << 10) | ((magnitude >>> 13) & 0x3ff);
        int dropped = magnitude & 0x1fff;
        if (dropped > 0x1000 || (dropped == 0x1000 && (half & 1) != 0)) {
            half++;                                                             // may carry into the exponent
        }
        return (short) (sign | half);
    }

    /** Float to bfloat16 (the float's upper half), rounding to nearest even. */
    static short floatToBfloat16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if ((bits & 0x7fffffff) > 0x7f800000) {
            return (short) ((bits >>> 16) | 0x40);                              // NaN stays NaN
        }
        return (short) ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16);
    }
}
