package org.groupnorm.dl4j.kernel;

import java.nio.FloatBuffer;
import java.util.Arrays;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * {@link FloatLoops} in plain Java, for JVMs without the Vector API. The elements are streamed through small on-heap
 * blocks ({@value #BLOCK} floats, copied in and out of the array in bulk) so that every loop runs over arrays at equal
 * indices: the only form HotSpot's auto-vectorizer (C2, JDK 17) turns into SIMD code. A loop that reads
 * {@code x[offset + i]} or adds into a scalar stays scalar, about eight times slower. The reductions therefore add
 * into {@value #BLOCK} float lanes, which are added into double at least every {@value #BLOCKS_PER_FLUSH} blocks.
 * Channels-last rows are copied into a row buffer one at a time and combined with the per-column coefficient
 * arrays at equal indices, for the same reason.
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
    public void normalize(FloatBuffer x, FloatBuffer y, int from, int length, float mean, float scale, float offset,
                          FusedActivation activation) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            normalize(b.x, b.out, count, mean, scale, offset);
            if (activation.isPiecewiseLinear()) {
                gateValues(b.out, activation.negativeSlope(), count);
            } else if (!activation.isIdentity()) {
                for (int i = 0; i < count; i++) {
                    b.out[i] = (float) activation.apply(b.out[i]);
                }
            }
            y.put(start, b.out, 0, count);
        }
    }

    @Override
    public void activationGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer g, int from, int length, float mean,
                                   float scale, float offset, FusedActivation activation) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            normalize(b.x, b.out, count, mean, scale, offset);
            for (int i = 0; i < count; i++) {
                b.dy[i] *= (float) activation.derivative(b.out[i]);
            }
            g.put(start, b.dy, 0, count);
        }
    }

    @Override
    public void gradientSums(FloatBuffer x, FloatBuffer dy, int from, int length, float mean, Sums sums) {
        sumsOfGradient(x, dy, from, length, mean, null, sums);
    }

    @Override
    public void inputGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int length, float mean,
                              float dyCoefficient, float xCoefficient, float constant) {
        inputGradientOf(x, dy, dx, from, length, mean, null, dyCoefficient, xCoefficient, constant);
    }

    @Override
    public void gatedGradientSums(FloatBuffer x, FloatBuffer dy, int from, int length, float mean, float scale,
                                  float offset, float negativeSlope, Sums sums) {
        sumsOfGradient(x, dy, from, length, mean, new Gate(scale, offset, negativeSlope), sums);
    }

    @Override
    public void gatedInputGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int length, float mean,
                                   float scale, float offset, float negativeSlope, float dyCoefficient,
                                   float xCoefficient, float constant) {
        inputGradientOf(x, dy, dx, from, length, mean, new Gate(scale, offset, negativeSlope), dyCoefficient,
                xCoefficient, constant);
    }

    /** A fused ReLU/LeakyReLU's gate: the pre-activation's coefficients and the slope at or below 0. */
    private record Gate(float scale, float offset, float negativeSlope) {
    }

    /** {@link #gradientSums} of dy, or of dy through {@code gate} when there is one. */
    private static void sumsOfGradient(FloatBuffer x, FloatBuffer dy, int from, int length, float mean, Gate gate,
                                       Sums sums) {
        Blocks b = BLOCKS.get();
        sums.clear();
        int blocks = 0;
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            if (gate != null) {
                gate(b.x, b.dy, count, mean, gate);
            }
            addGradientSums(b.x, b.dy, b.lanesA, b.lanesB, count, mean);
            if (++blocks % BLOCKS_PER_FLUSH == 0) {
                b.flushInto(sums);
            }
        }
        b.flushInto(sums);
    }

    /** {@link #inputGradient} of dy, or of dy through {@code gate} when there is one. */
    private static void inputGradientOf(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int length,
                                        float mean, Gate gate, float dyCoefficient, float xCoefficient,
                                        float constant) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            if (gate != null) {
                gate(b.x, b.dy, count, mean, gate);
            }
            inputGradient(b.x, b.dy, b.out, count, mean, dyCoefficient, xCoefficient, constant);
            dx.put(start, b.out, 0, count);
        }
    }

    @Override
    public void rowMoments(FloatBuffer x, int from, int stride, int rows, int width, float[] shift, float[] sums,
                           float[] squares) {
        Blocks b = BLOCKS.get();
        float[] row = b.row(width);
        float[] partialSums = b.partialSums(width);
        float[] partialSquares = b.partialProducts(width);
        Arrays.fill(sums, 0, width, 0);
        Arrays.fill(squares, 0, width, 0);
        for (int r = 0; r < rows; r++) {
            x.get(from + r * stride, row, 0, width);
            addRowMoments(row, shift, partialSums, partialSquares, width);
            if (r % ROWS_PER_PARTIAL == ROWS_PER_PARTIAL - 1 || r == rows - 1) {
                moveInto(partialSums, sums, width);
                moveInto(partialSquares, squares, width);
            }
        }
    }

    @Override
    public void rowNormalize(FloatBuffer x, FloatBuffer y, int from, int stride, int rows, int width, float[] anchor,
                             float[] scale, float[] offset, RowGate gate) {
        float[] row = BLOCKS.get().row(width);
        for (int r = 0; r < rows; r++) {
            x.get(from + r * stride, row, 0, width);
            normalizeRow(row, anchor, scale, offset, width);
            if (gate != null) {
                gateValues(row, gate.negativeSlope(), width);
            }
            y.put(from + r * stride, row, 0, width);
        }
    }

    @Override
    public void rowGradientSums(FloatBuffer x, FloatBuffer dy, int from, int stride, int rows, int width,
                                float[] anchor, RowGate gate, float[] sums, float[] products) {
        Blocks b = BLOCKS.get();
        float[] row = b.row(width);
        float[] gradRow = b.gradRow(width);
        float[] partialSums = b.partialSums(width);
        float[] partialProducts = b.partialProducts(width);
        Arrays.fill(sums, 0, width, 0);
        Arrays.fill(products, 0, width, 0);
        for (int r = 0; r < rows; r++) {
            x.get(from + r * stride, row, 0, width);
            dy.get(from + r * stride, gradRow, 0, width);
            if (gate != null) {
                gateRow(row, gradRow, anchor, gate, width);
            }
            addRowGradientSums(row, gradRow, anchor, partialSums, partialProducts, width);
            if (r % ROWS_PER_PARTIAL == ROWS_PER_PARTIAL - 1 || r == rows - 1) {
                moveInto(partialSums, sums, width);
                moveInto(partialProducts, products, width);
            }
        }
    }

    @Override
    public void rowInputGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int stride, int rows,
                                 int width, float[] anchor, RowGate gate, float[] dyScale, float[] xScale,
                                 float[] constant) {
        Blocks b = BLOCKS.get();
        float[] row = b.row(width);
        float[] gradRow = b.gradRow(width);
        for (int r = 0; r < rows; r++) {
            x.get(from + r * stride, row, 0, width);
            dy.get(from + r * stride, gradRow, 0, width);
            if (gate != null) {
                gateRow(row, gradRow, anchor, gate, width);
            }
            inputGradientRow(row, gradRow, anchor, dyScale, xScale, constant, width);
            dx.put(from + r * stride, row, 0, width);
        }
    }

    /** total += partial, then partial = 0. */
    private static void moveInto(float[] partial, float[] total, int width) {
        for (int c = 0; c < width; c++) {
            total[c] += partial[c];
            partial[c] = 0;
        }
    }

    private static void addRowMoments(float[] x, float[] shift, float[] sums, float[] squares, int width) {
        for (int c = 0; c < width; c++) {
            float d = x[c] - shift[c];
            sums[c] += d;
            squares[c] += d * d;
        }
    }

    private static void normalizeRow(float[] x, float[] anchor, float[] scale, float[] offset, int width) {
        for (int c = 0; c < width; c++) {
            x[c] = (x[c] - anchor[c]) * scale[c] + offset[c];
        }
    }

    /*
     * The gates are written with Math.max/min, which C2 vectorizes, instead of a comparison, which it compiles to a
     * branch per element (JDK 17 does not vectorize a conditional): with the pre-activation's sign random, the branch
     * mispredicted half the time and GN+ReLU forward+backward took 14.5 ms at 8x64x56x56, 11x plain GroupNorm;
     * written this way, 2.5 ms, 1.7x (docs/PERFORMANCE.md).
     */

    /** A ReLU/LeakyReLU applied to values in place: v for v > 0, negativeSlope * v otherwise (each term exact). */
    private static void gateValues(float[] values, float negativeSlope, int length) {
        for (int i = 0; i < length; i++) {
            values[i] = Math.max(values[i], 0f) + negativeSlope * Math.min(values[i], 0f);
        }
    }

    /** dy (the row buffer), in place, through the gate at the row's pre-activation. */
    private static void gateRow(float[] x, float[] dy, float[] anchor, RowGate gate, int width) {
        float[] scale = gate.scale();
        float[] offset = gate.offset();
        float negativeSlope = gate.negativeSlope();
        for (int c = 0; c < width; c++) {
            dy[c] *= gateFactor((x[c] - anchor[c]) * scale[c] + offset[c], negativeSlope);
        }
    }

    private static void addRowGradientSums(float[] x, float[] dy, float[] anchor, float[] sums, float[] products,
                                           int width) {
        for (int c = 0; c < width; c++) {
            sums[c] += dy[c];
            products[c] += dy[c] * (x[c] - anchor[c]);
        }
    }

    /** Writes dx over x (the row buffer): each element is read before it is replaced. */
    private static void inputGradientRow(float[] x, float[] dy, float[] anchor, float[] dyScale, float[] xScale,
                                         float[] constant, int width) {
        for (int c = 0; c < width; c++) {
            x[c] = dyScale[c] * dy[c] + xScale[c] * (x[c] - anchor[c]) + constant[c];
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

    /** dy, in place, through a ReLU/LeakyReLU at the pre-activation forward computed. */
    private static void gate(float[] x, float[] dy, int length, float mean, Gate gate) {
        float scale = gate.scale();
        float offset = gate.offset();
        float negativeSlope = gate.negativeSlope();
        for (int i = 0; i < length; i++) {
            dy[i] *= gateFactor((x[i] - mean) * scale + offset, negativeSlope);
        }
    }

    /**
     * A ReLU/LeakyReLU's derivative at {@code pre}: exactly 1 where it is positive, exactly negativeSlope elsewhere.
     * The step {@code positive} is 1 for pre &gt; 0 (the smallest positive float times 2^254 is still past 1) and 0
     * otherwise.
     */
    private static float gateFactor(float pre, float negativeSlope) {
        float positive = Math.min(Math.max(pre * 0x1p127f * 0x1p127f, 0f), 1f);
        return positive + (1f - positive) * negativeSlope;
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
        private float[] row = new float[0];
        private float[] gradRow = new float[0];
        private float[] partialSums = new float[0];
        private float[] partialProducts = new float[0];

        /** A channels-last row buffer of at least {@code width} floats (grows once per width). */
        float[] row(int width) {
            return row = atLeast(row, width);
        }

        float[] gradRow(int width) {
            return gradRow = atLeast(gradRow, width);
        }

        /** Column partial sums, zero between uses. */
        float[] partialSums(int width) {
            return partialSums = atLeast(partialSums, width);
        }

        float[] partialProducts(int width) {
            return partialProducts = atLeast(partialProducts, width);
        }

        private static float[] atLeast(float[] buffer, int length) {
            return buffer.length >= length ? buffer : new float[length];
        }

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
