package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import java.nio.ByteBuffer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * An array that the float32 loops do not run on in place but through per-thread float32 copies of a slab or block:
 * binary16 storage (widened on the way in, rounded once on the way out) and masked input (only the present
 * positions are copied, side by side; see {@link Presence}). Indices are in elements.
 *
 * @param <B> how the loop set addresses memory
 */
abstract class StagedArray<B extends Buffer> {

    /** {@code copy[to, to + length)} = the array's elements {@code [from, from + length)} as float32. */
    abstract void read(int from, B copy, int to, int length);

    /** The array's elements {@code [to, to + length)} = {@code copy[from, from + length)}, in the array's type. */
    abstract void write(B copy, int from, int to, int length);

    /** The array's elements {@code [from, from + length)} = 0. */
    abstract void clear(int from, int length);

    /** The array's own memory when the loops can run on it without a copy (float32 storage), else null. */
    abstract B inPlace();

    /** A float32 or binary16 c-contiguous host array, addressed by {@code loops}. */
    static <B extends Buffer> StagedArray<B> of(FloatLoops<B> loops, INDArray array) {
        return array.dataType() == DataType.HALF ? new Halves<>(loops, Elements.bytes(array))
                : new Floats<>(loops, loops.view(array));
    }

    private static final class Floats<B extends Buffer> extends StagedArray<B> {
        private final FloatLoops<B> loops;
        private final B array;

        Floats(FloatLoops<B> loops, B array) {
            this.loops = loops;
            this.array = array;
        }

        @Override
        void read(int from, B copy, int to, int length) {
            loops.copy(array, from, copy, to, length);
        }

        @Override
        void write(B copy, int from, int to, int length) {
            loops.copy(copy, from, array, to, length);
        }

        @Override
        void clear(int from, int length) {
            loops.clear(array, from, length);
        }

        @Override
        B inPlace() {
            return array;
        }
    }

    private static final class Halves<B extends Buffer> extends StagedArray<B> {
        private final FloatLoops<B> loops;
        private final ByteBuffer array;

        Halves(FloatLoops<B> loops, ByteBuffer array) {
            this.loops = loops;
            this.array = array;
        }

        @Override
        void read(int from, B copy, int to, int length) {
            loops.widenHalves(array, from, copy, to, length);
        }

        @Override
        void write(B copy, int from, int to, int length) {
            loops.narrowToHalves(copy, from, array, to, length);
        }

        @Override
        void clear(int from, int length) {
            for (int i = from; i < from + length; i++) {
                array.putShort(i * Short.BYTES, (short) 0);
            }
        }

        @Override
        B inPlace() {
            return null;
        }
    }
}
