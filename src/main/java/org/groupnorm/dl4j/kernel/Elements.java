package org.groupnorm.dl4j.kernel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Bulk reads and writes between a c-contiguous host array and a {@code double[]} work buffer. The kernel computes in
 * double whatever the storage type, so this is the only place that knows about float vs double storage.
 */
abstract class Elements {

    /** Whether the kernel can address arrays of this type. */
    static boolean supports(DataType type) {
        return type == DataType.FLOAT || type == DataType.DOUBLE;
    }

    /** A view of a c-contiguous array in host memory (the CPU backend's arrays). */
    static Elements of(INDArray array) {
        switch (array.dataType()) {
            case FLOAT:
                return new Floats(floats(array));
            case DOUBLE:
                return new Doubles(bytes(array).asDoubleBuffer());
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
            float[] staging = Scratch.floats(count);
            buffer.get(start, staging, 0, count);
            for (int i = 0; i < count; i++) {
                dst[dstOffset + i] = staging[i];
            }
        }

        @Override
        void write(int start, double[] src, int srcOffset, int count) {
            float[] staging = Scratch.floats(count);
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
}
