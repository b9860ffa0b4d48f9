package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import java.nio.ByteBuffer;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The loops the float32 paths are made of, over c-contiguous host arrays: four over one run of contiguous elements
 * with one coefficient each ({@link FloatRows}, channels first), and the same four over a block of rows with one
 * coefficient per column ({@link FloatChannelsLast}: a row is one position's channels). Two implementations compute
 * the same values: {@link VectorLoops} with explicit SIMD (the JDK's incubating
 * Vector API, when the JVM was started with {@code --add-modules jdk.incubator.vector}) and {@link BlockLoops} with
 * plain Java loops that HotSpot vectorizes by itself where it can. Reductions are returned in double; every float
 * partial sum they add up holds at most a few dozen terms.
 *
 * @param <B> how the implementation addresses the array's memory
 */
interface FloatLoops<B extends Buffer> {

    /** The array's elements, without a copy. */
    B view(INDArray array);

    /** Room for {@code floats} floats, for a float32 copy of a slab or block ({@link StagedArray}). */
    B allocate(int floats);

    /** {@code to[toIndex, toIndex + length)} = {@code from[fromIndex, fromIndex + length)}. */
    void copy(B from, int fromIndex, B to, int toIndex, int length);

    /** {@code to[from, from + length)} = 0. */
    void clear(B to, int from, int length);

    /**
     * {@code floats[to, to + length)} = the IEEE binary16 values {@code halves[from, from + length)} (indices in
     * elements, not bytes), exactly, as {@link Elements#halfToFloat}.
     */
    void widenHalves(ByteBuffer halves, int from, B floats, int to, int length);

    /**
     * {@code halves[to, to + length)} = {@code floats[from, from + length)} rounded to binary16 as
     * {@link Elements#floatToHalf} rounds them (to nearest even; past 65504 by half a step: infinity; NaN: NaN).
     */
    void narrowToHalves(B floats, int from, ByteBuffer halves, int to, int length);

    /** sums.plain = sum of (x - shift), sums.weighted = sum of (x - shift)^2, over [from, from + length). */
    void moments(B x, int from, int length, float shift, Sums sums);

    /** y = activation((x - mean) * scale + offset) over [from, from + length). */
    void normalize(B x, B y, int from, int length, float mean, float scale, float offset, FusedActivation activation);

    /**
     * The output gradient through a fused smooth activation (SIGMOID, TANH, SWISH),
     * {@code g = activation'((x - mean) * scale + offset) * dy}, into {@code g} (which may be where dx goes) over
     * [from, from + length). ReLU and LeakyReLU take the gated loops instead.
     */
    void activationGradient(B x, B dy, B g, int from, int length, float mean, float scale, float offset,
                            FusedActivation activation);

    /** sums.plain = sum of dy, sums.weighted = sum of dy * (x - mean), over [from, from + length). */
    void gradientSums(B x, B dy, int from, int length, float mean, Sums sums);

    /** dx = dyCoefficient * dy + xCoefficient * (x - mean) + constant over [from, from + length). */
    void inputGradient(B x, B dy, B dx, int from, int length, float mean, float dyCoefficient, float xCoefficient,
                       float constant);

    /**
     * {@link #gradientSums} of {@code g = dy} where the pre-activation {@code (x - mean) * scale + offset} is
     * above the activation's {@link FusedActivation#slopeThreshold} and {@code g = negativeSlope * dy} at or below it
     * (a fused ReLU or LeakyReLU), with g computed on the fly.
     */
    void gatedGradientSums(B x, B dy, int from, int length, float mean, float scale, float offset,
                           FusedActivation activation, Sums sums);

    /** {@link #inputGradient} of the gated gradient g of {@link #gatedGradientSums} in place of dy. */
    void gatedInputGradient(B x, B dy, B dx, int from, int length, float mean, float scale, float offset,
                            FusedActivation activation, float dyCoefficient, float xCoefficient, float constant);

    /**
     * Column sums over {@code rows} rows of {@code width} elements, row r starting at {@code from + r * stride}:
     * {@code sums[c] = sum of (x - shift[c])}, {@code squares[c] = sum of (x - shift[c])^2}, overwritten. Callers
     * pass at most {@value #ROWS_PER_SUM} rows; implementations add them in float partial sums of at most
     * {@value #ROWS_PER_PARTIAL} terms, and those in float (at most four), as the run loops do.
     */
    void rowMoments(B x, int from, int stride, int rows, int width, float[] shift, float[] sums, float[] squares);

    /**
     * {@code y = (x - anchor[c]) * scale[c] + offset[c]} over the rows, column c, through a ReLU/LeakyReLU of slope
     * {@code gate.negativeSlope()} at or below 0 when {@code gate} is not null (its own coefficients are then those
     * of y, unused here).
     */
    void rowNormalize(B x, B y, int from, int stride, int rows, int width, float[] anchor, float[] scale,
                      float[] offset, RowGate gate);

    /**
     * Column sums of g and g * (x - anchor[c]) over at most {@value #ROWS_PER_SUM} rows, overwritten into
     * {@code sums} and {@code products}; g is dy, or dy through {@code gate} when it is not null.
     */
    void rowGradientSums(B x, B dy, int from, int stride, int rows, int width, float[] anchor, RowGate gate,
                         float[] sums, float[] products);

    /**
     * {@code dx = dyScale[c] * g + xScale[c] * (x - anchor[c]) + constant[c]} over the rows, column c; g is dy, or dy
     * through {@code gate} when it is not null.
     */
    void rowInputGradient(B x, B dy, B dx, int from, int stride, int rows, int width, float[] anchor, RowGate gate,
                          float[] dyScale, float[] xScale, float[] constant);

    /** The most rows one column-sum call adds up in float (the caller then adds the result in double). */
    int ROWS_PER_SUM = 64;
    /** The most terms in one float partial sum of a column-sum call. */
    int ROWS_PER_PARTIAL = 16;

    /**
     * A fused ReLU/LeakyReLU in the row loops: g = dy where the pre-activation
     * {@code (x - anchor[c]) * scale[c] + offset[c]} is above the activation's {@link FusedActivation#slopeThreshold},
     * {@code negativeSlope * dy} at or below it; forward's output is the same on either side at 0.
     */
    record RowGate(float[] scale, float[] offset, FusedActivation activation) {

        float negativeSlope() {
            return activation.negativeSlope();
        }

        float slopeThreshold() {
            return activation.slopeThreshold();
        }
    }

    /** The two sums a reduction loop returns. */
    final class Sums {
        double plain;
        double weighted;

        void clear() {
            plain = 0;
            weighted = 0;
        }
    }
}
