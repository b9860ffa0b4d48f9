package org.groupnorm.dl4j.kernel;

import java.nio.FloatBuffer;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * {@link FloatLoops} in plain Java, for JVMs without the Vector API. The elements are streamed through small on-heap
 * blocks ({@value #BLOCK} floats, copied in and out of the array in bulk) so that every loop runs over arrays at equal
 * indices: the only form HotSpot's auto-vectorizer (C2, JDK 17) turns into SIMD code. A loop that reads
 * {@code x[offset + i]} or adds into a scalar stays scalar, about eight times slower. The reductions therefore add
 * into {@value #BLOCK} float lanes, which are added into double at least every {@value #BLOCKS_PER_FLUSH} blocks.
 */
final class BlockLoops implements FloatLoops<FloatBuffer> {

    private static final int BLOCK = 256;
    private static final int BLOCKS_PER_FLUSH = 16;

    private static final ThreadLocal<Blocks> BLOCKS = ThreadLocal.withInitial(Blocks::new);

    @Override
    public FloatBuffer view(INDArray array) {
        return Elements.floats(array);
    }

    @Override
    public void moments(FloatBuffer x, int from, int length, float shift, Sums sums) {
        Blocks b = BLOCKS.get();
        sums.clear();
        int blocks = 0;
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            addMoments(b.x, b.lanesA, b.lanesB, count, shift);
            if (++blocks % BLOCKS_PER_FLUSH == 0) {
                b.flushInto(sums);
            }
        }
        b.flushInto(sums);
    }

    @Override
    public void normalize(FloatBuffer x, FloatBuffer y, int from, int length, float mean, float scale, float offset) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            normalize(b.x, b.out, count, mean, scale, offset);
            y.put(start, b.out, 0, count);
        }
    }

    @Override
    public void gradientSums(FloatBuffer x, FloatBuffer dy, int from, int length, float mean, Sums sums) {
        Blocks b = BLOCKS.get();
        sums.clear();
        int blocks = 0;
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            addGradientSums(b.x, b.dy, b.lanesA, b.lanesB, count, mean);
            if (++blocks % BLOCKS_PER_FLUSH == 0) {
                b.flushInto(sums);
            }
        }
        b.flushInto(sums);
    }

    @Override
    public void inputGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int length, float mean,
                              float dyCoefficient, float xCoefficient, float constant) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            inputGradient(b.x, b.dy, b.out, count, mean, dyCoefficient, xCoefficient, constant);
            dx.put(start, b.out, 0, count);
        }
    }

    private static void addMoments(float[] x, float[] sums, float[] squares, int length, float shift) {
        for (int i = 0; i < length; i++) {
            float d = x[i] - shift;
            sums[i] += d;
            squares[i] += d * d;
        }
    }

    private static void addGradientSums(float[] x, float[] dy, float[] sums, float[] products, int length,
                                        float mean) {
        for (int i = 0; i < length; i++) {
            sums[i] += dy[i];
            products[i] += dy[i] * (x[i] - mean);
        }
    }

    private static void normalize(float[] x, float[] y, int length, float mean, float scale, float offset) {
        for (int i = 0; i < length; i++) {
            y[i] = (x[i] - mean) * scale + offset;
        }
    }

    private static void inputGradient(float[] x, float[] dy, float[] dx, int length, float mean, float dyCoefficient,
                                      float xCoefficient, float constant) {
        for (int i = 0; i < length; i++) {
            dx[i] = dyCoefficient * dy[i] + xCoefficient * (x[i] - mean) + constant;
        }
    }

    /** One thread's blocks and float lanes. */
    private static final class Blocks {
        final float[] x = new float[BLOCK];
        final float[] dy = new float[BLOCK];
        final float[] out = new float[BLOCK];
        final float[] lanesA = new float[BLOCK];
        final float[] lanesB = new float[BLOCK];

        /** Adds the lanes into the sums (in double) and clears them. */
        void flushInto(Sums sums) {
            for (int i = 0; i < BLOCK; i++) {
                sums.plain += lanesA[i];
                sums.weighted += lanesB[i];
                lanesA[i] = 0;
                lanesB[i] = 0;
            }
        }
    }
}
