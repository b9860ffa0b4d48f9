package org.groupnorm.dl4j.kernel;

import static jdk.incubator.vector.FloatVector.fromByteBuffer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * {@link FloatLoops} with explicit SIMD through the JDK's incubating Vector API, reading and writing the array's
 * memory in place (no copies). Only loaded when the JVM resolves {@code jdk.incubator.vector} (see {@link FloatRows}).
 *
 * <p>Reductions accumulate in two float vectors each (two independent chains keep the adders busy) for at most
 * {@value #STEPS_PER_FLUSH} steps, then add the lanes into double: no float partial sum holds more than
 * {@value #STEPS_PER_FLUSH} terms plus the lane reduction. Elements past the last whole step are done one by one.
 */
final class VectorLoops implements FloatLoops<ByteBuffer> {

    private static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;
    private static final int LANES = SPECIES.length();
    private static final int VECTOR_BYTES = LANES * Float.BYTES;
    /** Elements per step of the reductions: two vectors. */
    private static final int STEP = 2 * LANES;
    private static final int STEPS_PER_FLUSH = 16;
    private static final ByteOrder ORDER = ByteOrder.nativeOrder();
    /** As many int and short lanes as float lanes: the half-precision conversions widen and narrow lane by lane. */
    private static final VectorSpecies<Integer> INT_SPECIES = VectorSpecies.of(int.class, SPECIES.vectorShape());
    private static final VectorSpecies<Short> SHORT_SPECIES =
            VectorSpecies.of(short.class, VectorShape.forBitSize(LANES * Short.SIZE));
    /** 0.5f: adding it to a float below 2^-14 leaves that float's value in binary16 subnormal steps in its mantissa. */
    private static final float SUBNORMAL_MAGIC = 0.5f;

    /** The SIMD width in use, for logs and benchmarks. */
    static String describe() {
        return SPECIES.vectorBitSize() + "-bit SIMD, " + LANES + " float lanes";
    }

    /**
     * 1 MiB, so that a block is still in cache for its second pass: 1 MiB measured 0.84-0.96 ms forward+backward at
     * 8x64x56x56 where 256 KiB blocks (16 of the 64 channels) took 1.01-1.18 ms; 2x256x56x56 the same either way.
     */
    @Override
    public int channelsLastBlockFloats() {
        return 256 * 1024;
    }

    @Override
    public ByteBuffer view(INDArray array) {
        return Elements.bytes(array);
    }

    /** Off-heap like the arrays' views, so that the loops only ever see one buffer class. */
    @Override
    public ByteBuffer allocate(int floats) {
        return ByteBuffer.allocateDirect(floats * Float.BYTES).order(ORDER);
    }

    @Override
    public void copy(ByteBuffer from, int fromIndex, ByteBuffer to, int toIndex, int length) {
        to.put(toIndex * Float.BYTES, from, fromIndex * Float.BYTES, length * Float.BYTES);
    }

    @Override
    public void clear(ByteBuffer to, int from, int length) {
        int vectorsEnd = from + length / LANES * LANES;
        for (int i = from; i < vectorsEnd; i += LANES) {
            FloatVector.zero(SPECIES).intoByteBuffer(to, i * Float.BYTES, ORDER);
        }
        for (int i = vectorsEnd; i < from + length; i++) {
            to.putFloat(i * Float.BYTES, 0f);
        }
    }

    /*
     * The binary16 conversions as integer and float arithmetic on whole vectors (JDK 17 has no float16 lanes). Both
     * are checked against Elements' scalar conversions on every binary16 value and a sweep of float bit patterns.
     */

    /**
     * A half's magnitude bits shifted into a float's place read as a float, times 2^112, is that half's magnitude
     * (normal and subnormal alike: the product only moves the exponent); exponent 31 (infinity, NaN) maps to 255.
     */
    @Override
    public void widenHalves(ByteBuffer halves, int from, ByteBuffer floats, int to, int length) {
        int vectorsEnd = length / LANES * LANES;
        for (int i = 0; i < vectorsEnd; i += LANES) {
            IntVector bits = (IntVector) ShortVector.fromByteBuffer(SHORT_SPECIES, halves, (from + i) * Short.BYTES,
                    ORDER).convertShape(VectorOperators.S2I, INT_SPECIES, 0);   // sign-extended
            IntVector magnitude = bits.and(0x7fff);
            IntVector shifted = magnitude.lanewise(VectorOperators.LSHL, 13);
            IntVector finite = shifted.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts();
            finite.blend(shifted.or(0x7f800000), magnitude.compare(VectorOperators.GE, 0x7c00))
                    .or(bits.and(0x80000000)).reinterpretAsFloats()
                    .intoByteBuffer(floats, (to + i) * Float.BYTES, ORDER);
        }
        for (int i = vectorsEnd; i < length; i++) {
            floats.putFloat((to + i) * Float.BYTES, Elements.halfValue(halves.getShort((from + i) * Short.BYTES)));
        }
    }

    /**
     * Normal halves: the float's bits rebiased and rounded to nearest even at bit 13 (adding 0xfff plus the kept
     * part's lowest bit carries exactly when rounding up, into the exponent if need be); below 2^-14 a float addition
     * does the rounding (see {@link #SUBNORMAL_MAGIC}); from 65520 up, infinity; NaN stays NaN.
     */
    @Override
    public void narrowToHalves(ByteBuffer floats, int from, ByteBuffer halves, int to, int length) {
        int vectorsEnd = length / LANES * LANES;
        int magicBits = Float.floatToRawIntBits(SUBNORMAL_MAGIC);
        for (int i = 0; i < vectorsEnd; i += LANES) {
            IntVector bits = fromByteBuffer(SPECIES, floats, (from + i) * Float.BYTES, ORDER).reinterpretAsInts();
            IntVector magnitude = bits.and(0x7fffffff);
            IntVector normal = magnitude.add(((15 - 127) << 23) + 0xfff)
                    .add(magnitude.lanewise(VectorOperators.LSHR, 13).and(1)).lanewise(VectorOperators.LSHR, 13);
            IntVector subnormal = magnitude.reinterpretAsFloats().add(SUBNORMAL_MAGIC).reinterpretAsInts()
                    .sub(magicBits);
            IntVector half = normal.blend(subnormal, magnitude.compare(VectorOperators.LT, 113 << 23))
                    .blend(0x7c00, magnitude.compare(VectorOperators.GE, (127 + 16) << 23))
                    .blend(0x7e00, magnitude.compare(VectorOperators.GT, 0x7f800000))
                    .or(bits.lanewise(VectorOperators.LSHR, 16).and(0x8000));
            half.convertShape(VectorOperators.I2S, SHORT_SPECIES, 0).reinterpretAsShorts()
                    .intoByteBuffer(halves, (to + i) * Short.BYTES, ORDER);
        }
        for (int i = vectorsEnd; i < length; i++) {
            halves.putShort((to + i) * Short.BYTES, Elements.floatToHalf(floats.getFloat((from + i) * Float.BYTES)));
        }
    }

    @Override
    public void moments(ByteBuffer x, int from, int length, float shift, Sums sums) {
        sums.clear();
        int end = from + length;
        int stepsEnd = from + length / STEP * STEP;
        for (int chunk = from; chunk < stepsEnd; chunk += STEP * STEPS_PER_FLUSH) {
            int chunkEnd = Math.min(stepsEnd, chunk + STEP * STEPS_PER_FLUSH);
            FloatVector sum0 = FloatVector.zero(SPECIES);
            FloatVector sum1 = FloatVector.zero(SPECIES);
            FloatVector squares0 = FloatVector.zero(SPECIES);
            FloatVector squares1 = FloatVector.zero(SPECIES);
            for (int i = chunk; i < chunkEnd; i += STEP) {
                FloatVector d0 = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(shift);
                FloatVector d1 = fromByteBuffer(SPECIES, x, (i + LANES) * Float.BYTES, ORDER).sub(shift);
                sum0 = sum0.add(d0);
                sum1 = sum1.add(d1);
                squares0 = d0.fma(d0, squares0);
                squares1 = d1.fma(d1, squares1);
            }
            sums.plain += sum0.add(sum1).reduceLanes(VectorOperators.ADD);
            sums.weighted += squares0.add(squares1).reduceLanes(VectorOperators.ADD);
        }
        for (int i = stepsEnd; i < end; i++) {
            float d = x.getFloat(i * Float.BYTES) - shift;
            sums.plain += d;
            sums.weighted += d * d;
        }
    }

    /*
     * Every vector expression is written out inside its loop: no vector is passed to or returned from a method of
     * ours. The JDK's vector methods are always inlined, ours are not: C2 does not inline a call in a branch that had
     * not run when it compiled the caller (an activation first used after that), and a vector crossing such a call
     * is boxed, which made the loop 3-5x slower (ReLU forward 1.0 ms instead of 0.24 ms at 8x64x56x56 in some JVMs).
     */

    @Override
    public void normalize(ByteBuffer x, ByteBuffer y, int from, int length, float mean, float scale, float offset,
                          FusedActivation activation) {
        int vectorsEnd = from + length / LANES * LANES;
        switch (activation.kind()) {
            case IDENTITY:
                normalizeIdentity(x, y, from, vectorsEnd, mean, scale, offset);
                break;
            case RELU:
                normalizeRelu(x, y, from, vectorsEnd, mean, scale, offset);
                break;
            case LEAKYRELU:
                normalizeLeakyRelu(x, y, from, vectorsEnd, mean, scale, offset, activation.negativeSlope());
                break;
            case SIGMOID:
                sigmoidLoop(x, null, y, from, vectorsEnd, mean, scale, offset, SigmoidOutput.SIGMOID);
                break;
            case TANH:
                normalizeTanh(x, y, from, vectorsEnd, mean, scale, offset);
                break;
            case SWISH:
                sigmoidLoop(x, null, y, from, vectorsEnd, mean, scale, offset, SigmoidOutput.SWISH);
                break;
            default:
                throw new IllegalStateException(activation.toString());
        }
        for (int i = vectorsEnd; i < from + length; i++) {
            y.putFloat(i * Float.BYTES, (float) activation.apply((x.getFloat(i * Float.BYTES) - mean) * scale
                    + offset));
        }
    }

    private static void normalizeIdentity(ByteBuffer x, ByteBuffer y, int from, int end, float mean, float scale,
                                          float offset) {
        for (int i = from; i < end; i += LANES) {
            fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(scale, offset)
                    .intoByteBuffer(y, i * Float.BYTES, ORDER);
        }
    }

    private static void normalizeRelu(ByteBuffer x, ByteBuffer y, int from, int end, float mean, float scale,
                                      float offset) {
        for (int i = from; i < end; i += LANES) {
            fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(scale, offset).max(0f)
                    .intoByteBuffer(y, i * Float.BYTES, ORDER);
        }
    }

    private static void normalizeLeakyRelu(ByteBuffer x, ByteBuffer y, int from, int end, float mean, float scale,
                                           float offset, float alpha) {
        for (int i = from; i < end; i += LANES) {
            FloatVector pre = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(scale, offset);
            pre.blend(pre.mul(alpha), pre.compare(VectorOperators.LE, 0f)).intoByteBuffer(y, i * Float.BYTES, ORDER);
        }
    }


    private static void normalizeTanh(ByteBuffer x, ByteBuffer y, int from, int end, float mean, float scale,
                                      float offset) {
        for (int i = from; i < end; i += LANES) {
            fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(scale, offset)
                    .lanewise(VectorOperators.TANH).intoByteBuffer(y, i * Float.BYTES, ORDER);
        }
    }


    @Override
    public void activationGradient(ByteBuffer x, ByteBuffer dy, ByteBuffer g, int from, int length, float mean,
                                   float scale, float offset, FusedActivation activation) {
        int vectorsEnd = from + length / LANES * LANES;
        switch (activation.kind()) {
            case SIGMOID:
                sigmoidLoop(x, dy, g, from, vectorsEnd, mean, scale, offset, SigmoidOutput.SIGMOID_GRADIENT);
                break;
            case TANH:
                gradientThroughTanh(x, dy, g, from, vectorsEnd, mean, scale, offset);
                break;
            case SWISH:
                sigmoidLoop(x, dy, g, from, vectorsEnd, mean, scale, offset, SigmoidOutput.SWISH_GRADIENT);
                break;
            default:
                throw new IllegalStateException(activation.toString());
        }
        for (int i = vectorsEnd; i < from + length; i++) {
            float pre = (x.getFloat(i * Float.BYTES) - mean) * scale + offset;
            g.putFloat(i * Float.BYTES, dy.getFloat(i * Float.BYTES) * (float) activation.derivative(pre));
        }
    }


    private static void gradientThroughTanh(ByteBuffer x, ByteBuffer dy, ByteBuffer g, int from, int end,
                                        float mean, float scale, float offset) {
        for (int i = from; i < end; i += LANES) {
            FloatVector t = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(scale, offset)
                    .lanewise(VectorOperators.TANH);
            fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER).mul(t.mul(t).neg().add(1f))
                    .intoByteBuffer(g, i * Float.BYTES, ORDER);
        }
    }


    /** What {@link #sigmoidLoop} writes: the activation or its gradient, of the sigmoid or of SiLU. */
    private enum SigmoidOutput {
        SIGMOID(false, false), SWISH(false, true), SIGMOID_GRADIENT(true, false), SWISH_GRADIENT(true, true);

        final boolean gradient;
        final boolean swish;

        SigmoidOutput(boolean gradient, boolean swish) {
            this.gradient = gradient;
            this.swish = swish;
        }
    }

    /**
     * The loop of the sigmoid-based activations over [from, end) (whole vectors): s = 1 / (1 + exp(-pre)), then
     * {@code out} = s (SIGMOID), pre s (SWISH), dy s (1 - s) or dy s (1 - s) pre + dy s (their gradients).
     *
     * <p>exp is Cephes' single-precision expf written out in vector operations: n = round(v / ln 2) by the
     * 1.5 * 2^23 trick, r = v - n ln 2 in two parts, e^r by a degree-7 polynomial, 2^n built in the exponent bits.
     * Within 1e-7 relative of exp over the clamped range (exp(-87.3) is still a normal float, past 88.7 float
     * overflows; the sigmoid there is 0 or 1 to float precision either way); NaN stays NaN (the clamps compare and
     * blend: a comparison with NaN is false). The JDK's EXP calls a routine outside the loop: with it, fused SiLU
     * forward+backward took 1.5-2.1 ms at 8x64x56x56, with this 1.1-1.2 ms.
     *
     * <p>The four outputs are selected by blends under masks fixed for the whole loop, not by a branch: with a
     * switch in the loop body, how C2 compiled it depended on which loops had run first; after a plain normalize,
     * the SiLU forward and gradient took about 8 ns per element instead of 1.3-2 ({@code LoopOrderBenchmark}).
     */
    private static void sigmoidLoop(ByteBuffer x, ByteBuffer dy, ByteBuffer out, int from, int end, float mean,
                                    float scale, float offset, SigmoidOutput output) {
        FloatVector zero = FloatVector.zero(SPECIES);
        FloatVector one = FloatVector.broadcast(SPECIES, 1f);
        FloatVector roundingShift = FloatVector.broadcast(SPECIES, 12582912f);   // 1.5 * 2^23
        FloatVector log2e = FloatVector.broadcast(SPECIES, 1.44269504f);
        FloatVector minusLn2High = FloatVector.broadcast(SPECIES, -0.693359375f);
        FloatVector ln2Low = FloatVector.broadcast(SPECIES, 2.12194440e-4f);
        FloatVector p0 = FloatVector.broadcast(SPECIES, 1.9875691500e-4f);
        FloatVector p1 = FloatVector.broadcast(SPECIES, 1.3981999507e-3f);
        FloatVector p2 = FloatVector.broadcast(SPECIES, 8.3334519073e-3f);
        FloatVector p3 = FloatVector.broadcast(SPECIES, 4.1665795894e-2f);
        FloatVector p4 = FloatVector.broadcast(SPECIES, 1.6666665459e-1f);
        FloatVector p5 = FloatVector.broadcast(SPECIES, 5.0000001201e-1f);
        VectorMask<Float> forward = SPECIES.maskAll(!output.gradient);
        VectorMask<Float> swish = SPECIES.maskAll(output.swish);
        ByteBuffer gates = output.gradient ? dy : x;   // forward reads x here and blends in 1: no dy to read
        for (int i = from; i < end; i += LANES) {
            FloatVector pre = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(scale, offset);
            FloatVector negated = pre.neg();
            FloatVector low = negated.blend(-87.3f, negated.compare(VectorOperators.LT, -87.3f));
            FloatVector v = low.blend(88.7f, low.compare(VectorOperators.GT, 88.7f));
            FloatVector shifted = v.fma(log2e, roundingShift);       // 1.5 * 2^23 + n in float: n in the low bits
            FloatVector n = shifted.sub(roundingShift);
            FloatVector r = n.fma(minusLn2High, v).add(n.mul(ln2Low));
            FloatVector polynomial = p0.fma(r, p1).fma(r, p2).fma(r, p3).fma(r, p4).fma(r, p5);
            FloatVector expR = polynomial.fma(r.mul(r), r).add(1f);
            FloatVector twoToN = ((IntVector) shifted.reinterpretAsInts()).sub(0x4B400000 - 127)
                    .lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
            FloatVector s = one.div(expR.mul(twoToN).add(1f));
            // Backward: gated = dy s, sigmoidTerm = dy s (1 - s). Forward: both are s. SiLU then adds pre times
            // sigmoidTerm to gated (backward) or to 0 (forward).
            FloatVector gated = fromByteBuffer(SPECIES, gates, i * Float.BYTES, ORDER).blend(one, forward).mul(s);
            FloatVector sigmoidTerm = gated.mul(one.sub(s).blend(one, forward));
            sigmoidTerm.blend(sigmoidTerm.fma(pre, gated.blend(zero, forward)), swish)
                    .intoByteBuffer(out, i * Float.BYTES, ORDER);
        }
    }

    @Override
    public void gradientSums(ByteBuffer x, ByteBuffer dy, int from, int length, float mean, Sums sums) {
        sums.clear();
        int end = from + length;
        int stepsEnd = from + length / STEP * STEP;
        for (int chunk = from; chunk < stepsEnd; chunk += STEP * STEPS_PER_FLUSH) {
            int chunkEnd = Math.min(stepsEnd, chunk + STEP * STEPS_PER_FLUSH);
            FloatVector sum0 = FloatVector.zero(SPECIES);
            FloatVector sum1 = FloatVector.zero(SPECIES);
            FloatVector products0 = FloatVector.zero(SPECIES);
            FloatVector products1 = FloatVector.zero(SPECIES);
            for (int i = chunk; i < chunkEnd; i += STEP) {
                FloatVector dy0 = fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER);
                FloatVector dy1 = fromByteBuffer(SPECIES, dy, (i + LANES) * Float.BYTES, ORDER);
                sum0 = sum0.add(dy0);
                sum1 = sum1.add(dy1);
                products0 = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(dy0, products0);
                products1 = fromByteBuffer(SPECIES, x, (i + LANES) * Float.BYTES, ORDER).sub(mean).fma(dy1, products1);
            }
            sums.plain += sum0.add(sum1).reduceLanes(VectorOperators.ADD);
            sums.weighted += products0.add(products1).reduceLanes(VectorOperators.ADD);
        }
        for (int i = stepsEnd; i < end; i++) {
            float g = dy.getFloat(i * Float.BYTES);
            sums.plain += g;
            sums.weighted += g * (x.getFloat(i * Float.BYTES) - mean);
        }
    }

    @Override
    public void inputGradient(ByteBuffer x, ByteBuffer dy, ByteBuffer dx, int from, int length, float mean,
                              float dyCoefficient, float xCoefficient, float constant) {
        int end = from + length;
        int vectorsEnd = from + length / LANES * LANES;
        FloatVector xCoefficients = FloatVector.broadcast(SPECIES, xCoefficient);
        for (int i = from; i < vectorsEnd; i += LANES) {
            FloatVector gradient = fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER).fma(dyCoefficient, constant);
            fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean).fma(xCoefficients, gradient)
                    .intoByteBuffer(dx, i * Float.BYTES, ORDER);
        }
        for (int i = vectorsEnd; i < end; i++) {
            float centered = x.getFloat(i * Float.BYTES) - mean;
            dx.putFloat(i * Float.BYTES, dyCoefficient * dy.getFloat(i * Float.BYTES) + xCoefficient * centered
                    + constant);
        }
    }

    @Override
    public void gatedGradientSums(ByteBuffer x, ByteBuffer dy, int from, int length, float mean, float scale,
                                  float offset, FusedActivation activation, Sums sums) {
        float negativeSlope = activation.negativeSlope();
        float slopeThreshold = activation.slopeThreshold();
        sums.clear();
        int end = from + length;
        int stepsEnd = from + length / STEP * STEP;
        for (int chunk = from; chunk < stepsEnd; chunk += STEP * STEPS_PER_FLUSH) {
            int chunkEnd = Math.min(stepsEnd, chunk + STEP * STEPS_PER_FLUSH);
            FloatVector sum0 = FloatVector.zero(SPECIES);
            FloatVector sum1 = FloatVector.zero(SPECIES);
            FloatVector products0 = FloatVector.zero(SPECIES);
            FloatVector products1 = FloatVector.zero(SPECIES);
            for (int i = chunk; i < chunkEnd; i += STEP) {
                FloatVector centered0 = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean);
                FloatVector centered1 = fromByteBuffer(SPECIES, x, (i + LANES) * Float.BYTES, ORDER).sub(mean);
                // dy above the threshold, negativeSlope * dy at or below it
                FloatVector dy0 = fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER);
                FloatVector dy1 = fromByteBuffer(SPECIES, dy, (i + LANES) * Float.BYTES, ORDER);
                FloatVector g0 = dy0.blend(dy0.mul(negativeSlope),
                        centered0.fma(scale, offset).compare(VectorOperators.LE, slopeThreshold));
                FloatVector g1 = dy1.blend(dy1.mul(negativeSlope),
                        centered1.fma(scale, offset).compare(VectorOperators.LE, slopeThreshold));
                sum0 = sum0.add(g0);
                sum1 = sum1.add(g1);
                products0 = centered0.fma(g0, products0);
                products1 = centered1.fma(g1, products1);
            }
            sums.plain += sum0.add(sum1).reduceLanes(VectorOperators.ADD);
            sums.weighted += products0.add(products1).reduceLanes(VectorOperators.ADD);
        }
        for (int i = stepsEnd; i < end; i++) {
            float centered = x.getFloat(i * Float.BYTES) - mean;
            float g = gated(dy.getFloat(i * Float.BYTES), centered, scale, offset, negativeSlope,
                    slopeThreshold);
            sums.plain += g;
            sums.weighted += g * centered;
        }
    }

    @Override
    public void gatedInputGradient(ByteBuffer x, ByteBuffer dy, ByteBuffer dx, int from, int length, float mean,
                                   float scale, float offset, FusedActivation activation, float dyCoefficient,
                                   float xCoefficient, float constant) {
        float negativeSlope = activation.negativeSlope();
        float slopeThreshold = activation.slopeThreshold();
        int end = from + length;
        int vectorsEnd = from + length / LANES * LANES;
        FloatVector xCoefficients = FloatVector.broadcast(SPECIES, xCoefficient);
        for (int i = from; i < vectorsEnd; i += LANES) {
            FloatVector centered = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(mean);
            FloatVector gradOut = fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER);
            FloatVector gradient = gradOut.blend(gradOut.mul(negativeSlope),
                    centered.fma(scale, offset).compare(VectorOperators.LE, slopeThreshold))
                    .fma(dyCoefficient, constant);
            centered.fma(xCoefficients, gradient).intoByteBuffer(dx, i * Float.BYTES, ORDER);
        }
        for (int i = vectorsEnd; i < end; i++) {
            float centered = x.getFloat(i * Float.BYTES) - mean;
            float g = gated(dy.getFloat(i * Float.BYTES), centered, scale, offset, negativeSlope,
                    slopeThreshold);
            dx.putFloat(i * Float.BYTES, dyCoefficient * g + xCoefficient * centered + constant);
        }
    }

    /**
     * dy where the pre-activation is above the threshold, negativeSlope * dy at or below it, for the elements past
     * whole vectors.
     */
    private static float gated(float dy, float centered, float scale, float offset, float negativeSlope,
                               float slopeThreshold) {
        return centered * scale + offset > slopeThreshold ? dy : negativeSlope * dy;
    }

    /*
     * The row loops walk a block row by row over tiles of whole vectors, the tile's coefficients and sums held in
     * registers: a tile's part of a row is one contiguous run, where walking one vector's column down the rows reads
     * one cache line per row (NHWC forward+backward at 8x64x56x56 went from 1.25-1.37x to 1.04-1.15x the
     * channels-first time: docs/PERFORMANCE.md). Forward tiles are four vectors wide; backward holds more vectors per
     * column (gate coefficients, two sums and their partials, three dx coefficients), so its tiles are two: four ran
     * out of registers and were an order of magnitude slower. Columns past the last whole tile go one vector at a time
     * down the rows, in chunks so that the rows stay in cache.
     */

    @Override
    public void rowMoments(ByteBuffer x, int from, int stride, int rows, int width, float[] shift, float[] sums,
                           float[] squares) {
        int vectorsEnd = width / LANES * LANES;
        int tilesEnd = width / (4 * LANES) * (4 * LANES);
        for (int c = 0; c < tilesEnd; c += 4 * LANES) {
            FloatVector shift0 = FloatVector.fromArray(SPECIES, shift, c);
            FloatVector shift1 = FloatVector.fromArray(SPECIES, shift, c + LANES);
            FloatVector shift2 = FloatVector.fromArray(SPECIES, shift, c + 2 * LANES);
            FloatVector shift3 = FloatVector.fromArray(SPECIES, shift, c + 3 * LANES);
            FloatVector sum0 = FloatVector.zero(SPECIES);
            FloatVector sum1 = FloatVector.zero(SPECIES);
            FloatVector sum2 = FloatVector.zero(SPECIES);
            FloatVector sum3 = FloatVector.zero(SPECIES);
            FloatVector square0 = FloatVector.zero(SPECIES);
            FloatVector square1 = FloatVector.zero(SPECIES);
            FloatVector square2 = FloatVector.zero(SPECIES);
            FloatVector square3 = FloatVector.zero(SPECIES);
            for (int part = 0; part < rows; part += ROWS_PER_PARTIAL) {
                int partEnd = Math.min(rows, part + ROWS_PER_PARTIAL);
                FloatVector partSum0 = FloatVector.zero(SPECIES);
                FloatVector partSum1 = FloatVector.zero(SPECIES);
                FloatVector partSum2 = FloatVector.zero(SPECIES);
                FloatVector partSum3 = FloatVector.zero(SPECIES);
                FloatVector partSquare0 = FloatVector.zero(SPECIES);
                FloatVector partSquare1 = FloatVector.zero(SPECIES);
                FloatVector partSquare2 = FloatVector.zero(SPECIES);
                FloatVector partSquare3 = FloatVector.zero(SPECIES);
                for (int r = part; r < partEnd; r++) {
                    int i = (from + r * stride + c) * Float.BYTES;
                    FloatVector d0 = fromByteBuffer(SPECIES, x, i, ORDER).sub(shift0);
                    FloatVector d1 = fromByteBuffer(SPECIES, x, i + VECTOR_BYTES, ORDER).sub(shift1);
                    FloatVector d2 = fromByteBuffer(SPECIES, x, i + 2 * VECTOR_BYTES, ORDER).sub(shift2);
                    FloatVector d3 = fromByteBuffer(SPECIES, x, i + 3 * VECTOR_BYTES, ORDER).sub(shift3);
                    partSum0 = partSum0.add(d0);
                    partSum1 = partSum1.add(d1);
                    partSum2 = partSum2.add(d2);
                    partSum3 = partSum3.add(d3);
                    partSquare0 = d0.fma(d0, partSquare0);
                    partSquare1 = d1.fma(d1, partSquare1);
                    partSquare2 = d2.fma(d2, partSquare2);
                    partSquare3 = d3.fma(d3, partSquare3);
                }
                sum0 = sum0.add(partSum0);
                sum1 = sum1.add(partSum1);
                sum2 = sum2.add(partSum2);
                sum3 = sum3.add(partSum3);
                square0 = square0.add(partSquare0);
                square1 = square1.add(partSquare1);
                square2 = square2.add(partSquare2);
                square3 = square3.add(partSquare3);
            }
            sum0.intoArray(sums, c);
            sum1.intoArray(sums, c + LANES);
            sum2.intoArray(sums, c + 2 * LANES);
            sum3.intoArray(sums, c + 3 * LANES);
            square0.intoArray(squares, c);
            square1.intoArray(squares, c + LANES);
            square2.intoArray(squares, c + 2 * LANES);
            square3.intoArray(squares, c + 3 * LANES);
        }
        for (int c = tilesEnd; c < vectorsEnd; c += LANES) {
            FloatVector shifts = FloatVector.fromArray(SPECIES, shift, c);
            // Four chains (rows modulo 4): each holds at most ROWS_PER_SUM / 4 terms, and one chain would wait on
            // the adder's latency at every row.
            FloatVector sum0 = FloatVector.zero(SPECIES);
            FloatVector sum1 = FloatVector.zero(SPECIES);
            FloatVector sum2 = FloatVector.zero(SPECIES);
            FloatVector sum3 = FloatVector.zero(SPECIES);
            FloatVector square0 = FloatVector.zero(SPECIES);
            FloatVector square1 = FloatVector.zero(SPECIES);
            FloatVector square2 = FloatVector.zero(SPECIES);
            FloatVector square3 = FloatVector.zero(SPECIES);
            int r = 0;
            for (; r + 3 < rows; r += 4) {
                int i = from + r * stride + c;
                FloatVector d0 = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(shifts);
                FloatVector d1 = fromByteBuffer(SPECIES, x, (i + stride) * Float.BYTES, ORDER).sub(shifts);
                FloatVector d2 = fromByteBuffer(SPECIES, x, (i + 2 * stride) * Float.BYTES, ORDER).sub(shifts);
                FloatVector d3 = fromByteBuffer(SPECIES, x, (i + 3 * stride) * Float.BYTES, ORDER).sub(shifts);
                sum0 = sum0.add(d0);
                sum1 = sum1.add(d1);
                sum2 = sum2.add(d2);
                sum3 = sum3.add(d3);
                square0 = d0.fma(d0, square0);
                square1 = d1.fma(d1, square1);
                square2 = d2.fma(d2, square2);
                square3 = d3.fma(d3, square3);
            }
            for (; r < rows; r++) {
                FloatVector d = fromByteBuffer(SPECIES, x, (from + r * stride + c) * Float.BYTES, ORDER).sub(shifts);
                sum0 = sum0.add(d);
                square0 = d.fma(d, square0);
            }
            sum0.add(sum1).add(sum2.add(sum3)).intoArray(sums, c);
            square0.add(square1).add(square2.add(square3)).intoArray(squares, c);
        }
        for (int c = vectorsEnd; c < width; c++) {
            float sum = 0;
            float square = 0;
            for (int r = 0; r < rows; r++) {
                float d = x.getFloat((from + r * stride + c) * Float.BYTES) - shift[c];
                sum += d;
                square += d * d;
            }
            sums[c] = sum;
            squares[c] = square;
        }
    }

    @Override
    public void rowNormalize(ByteBuffer x, ByteBuffer y, int from, int stride, int rows, int width, float[] anchor,
                             float[] scale, float[] offset, RowGate gate) {
        int vectorsEnd = width / LANES * LANES;
        boolean gated = gate != null;
        float slope = gated ? gate.negativeSlope() : 1f;
        // Rows in chunks, columns within a chunk: the coefficients stay in registers over a chunk that stays in cache.
        int tilesEnd = width / (4 * LANES) * (4 * LANES);
        for (int c = 0; c < tilesEnd; c += 4 * LANES) {
            FloatVector anchor0 = FloatVector.fromArray(SPECIES, anchor, c);
            FloatVector anchor1 = FloatVector.fromArray(SPECIES, anchor, c + LANES);
            FloatVector anchor2 = FloatVector.fromArray(SPECIES, anchor, c + 2 * LANES);
            FloatVector anchor3 = FloatVector.fromArray(SPECIES, anchor, c + 3 * LANES);
            FloatVector scale0 = FloatVector.fromArray(SPECIES, scale, c);
            FloatVector scale1 = FloatVector.fromArray(SPECIES, scale, c + LANES);
            FloatVector scale2 = FloatVector.fromArray(SPECIES, scale, c + 2 * LANES);
            FloatVector scale3 = FloatVector.fromArray(SPECIES, scale, c + 3 * LANES);
            FloatVector offset0 = FloatVector.fromArray(SPECIES, offset, c);
            FloatVector offset1 = FloatVector.fromArray(SPECIES, offset, c + LANES);
            FloatVector offset2 = FloatVector.fromArray(SPECIES, offset, c + 2 * LANES);
            FloatVector offset3 = FloatVector.fromArray(SPECIES, offset, c + 3 * LANES);
            for (int r = 0; r < rows; r++) {
                int i = (from + r * stride + c) * Float.BYTES;
                FloatVector v0 = fromByteBuffer(SPECIES, x, i, ORDER).sub(anchor0).fma(scale0, offset0);
                FloatVector v1 = fromByteBuffer(SPECIES, x, i + VECTOR_BYTES, ORDER).sub(anchor1).fma(scale1, offset1);
                FloatVector v2 = fromByteBuffer(SPECIES, x, i + 2 * VECTOR_BYTES, ORDER).sub(anchor2)
                        .fma(scale2, offset2);
                FloatVector v3 = fromByteBuffer(SPECIES, x, i + 3 * VECTOR_BYTES, ORDER).sub(anchor3)
                        .fma(scale3, offset3);
                if (gated) {
                    v0 = v0.blend(v0.mul(slope), v0.compare(VectorOperators.LE, 0f));
                    v1 = v1.blend(v1.mul(slope), v1.compare(VectorOperators.LE, 0f));
                    v2 = v2.blend(v2.mul(slope), v2.compare(VectorOperators.LE, 0f));
                    v3 = v3.blend(v3.mul(slope), v3.compare(VectorOperators.LE, 0f));
                }
                v0.intoByteBuffer(y, i, ORDER);
                v1.intoByteBuffer(y, i + VECTOR_BYTES, ORDER);
                v2.intoByteBuffer(y, i + 2 * VECTOR_BYTES, ORDER);
                v3.intoByteBuffer(y, i + 3 * VECTOR_BYTES, ORDER);
            }
        }
        for (int chunk = 0; chunk < rows; chunk += ROWS_PER_SUM) {
            int chunkEnd = Math.min(rows, chunk + ROWS_PER_SUM);
            for (int c = tilesEnd; c < vectorsEnd; c += LANES) {
                FloatVector anchors = FloatVector.fromArray(SPECIES, anchor, c);
                FloatVector scales = FloatVector.fromArray(SPECIES, scale, c);
                FloatVector offsets = FloatVector.fromArray(SPECIES, offset, c);
                for (int r = chunk; r < chunkEnd; r++) {
                    int i = from + r * stride + c;
                    FloatVector v = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(anchors)
                            .fma(scales, offsets);
                    if (gated) {
                        v = v.blend(v.mul(slope), v.compare(VectorOperators.LE, 0f));
                    }
                    v.intoByteBuffer(y, i * Float.BYTES, ORDER);
                }
            }
            for (int c = vectorsEnd; c < width; c++) {
                for (int r = chunk; r < chunkEnd; r++) {
                    int i = (from + r * stride + c) * Float.BYTES;
                    float v = (x.getFloat(i) - anchor[c]) * scale[c] + offset[c];
                    y.putFloat(i, gated && v <= 0 ? slope * v : v);
                }
            }
        }
    }

    @Override
    public void rowGradientSums(ByteBuffer x, ByteBuffer dy, int from, int stride, int rows, int width,
                                float[] anchor, RowGate gate, float[] sums, float[] products) {
        int vectorsEnd = width / LANES * LANES;
        boolean gated = gate != null;
        float[] gateScale = gated ? gate.scale() : anchor;     // read only when gated
        float[] gateOffset = gated ? gate.offset() : anchor;
        float slope = gated ? gate.negativeSlope() : 1f;
        float threshold = gated ? gate.slopeThreshold() : 0f;
        int tilesEnd = width / (2 * LANES) * (2 * LANES);
        for (int c = 0; c < tilesEnd; c += 2 * LANES) {
            FloatVector anchor0 = FloatVector.fromArray(SPECIES, anchor, c);
            FloatVector anchor1 = FloatVector.fromArray(SPECIES, anchor, c + LANES);
            FloatVector gateScale0 = FloatVector.fromArray(SPECIES, gateScale, c);
            FloatVector gateScale1 = FloatVector.fromArray(SPECIES, gateScale, c + LANES);
            FloatVector gateOffset0 = FloatVector.fromArray(SPECIES, gateOffset, c);
            FloatVector gateOffset1 = FloatVector.fromArray(SPECIES, gateOffset, c + LANES);
            FloatVector sum0 = FloatVector.zero(SPECIES);
            FloatVector sum1 = FloatVector.zero(SPECIES);
            FloatVector product0 = FloatVector.zero(SPECIES);
            FloatVector product1 = FloatVector.zero(SPECIES);
            for (int part = 0; part < rows; part += ROWS_PER_PARTIAL) {
                int partEnd = Math.min(rows, part + ROWS_PER_PARTIAL);
                FloatVector partSum0 = FloatVector.zero(SPECIES);
                FloatVector partSum1 = FloatVector.zero(SPECIES);
                FloatVector partProduct0 = FloatVector.zero(SPECIES);
                FloatVector partProduct1 = FloatVector.zero(SPECIES);
                for (int r = part; r < partEnd; r++) {
                    int i = (from + r * stride + c) * Float.BYTES;
                    FloatVector d0 = fromByteBuffer(SPECIES, x, i, ORDER).sub(anchor0);
                    FloatVector d1 = fromByteBuffer(SPECIES, x, i + VECTOR_BYTES, ORDER).sub(anchor1);
                    FloatVector g0 = fromByteBuffer(SPECIES, dy, i, ORDER);
                    FloatVector g1 = fromByteBuffer(SPECIES, dy, i + VECTOR_BYTES, ORDER);
                    if (gated) {
                        g0 = g0.blend(g0.mul(slope),
                                d0.fma(gateScale0, gateOffset0).compare(VectorOperators.LE, threshold));
                        g1 = g1.blend(g1.mul(slope),
                                d1.fma(gateScale1, gateOffset1).compare(VectorOperators.LE, threshold));
                    }
                    partSum0 = partSum0.add(g0);
                    partSum1 = partSum1.add(g1);
                    partProduct0 = d0.fma(g0, partProduct0);
                    partProduct1 = d1.fma(g1, partProduct1);
                }
                sum0 = sum0.add(partSum0);
                sum1 = sum1.add(partSum1);
                product0 = product0.add(partProduct0);
                product1 = product1.add(partProduct1);
            }
            sum0.intoArray(sums, c);
            sum1.intoArray(sums, c + LANES);
            product0.intoArray(products, c);
            product1.intoArray(products, c + LANES);
        }
        for (int c = tilesEnd; c < vectorsEnd; c += LANES) {
            FloatVector anchors = FloatVector.fromArray(SPECIES, anchor, c);
            FloatVector gateScales = FloatVector.fromArray(SPECIES, gateScale, c);
            FloatVector gateOffsets = FloatVector.fromArray(SPECIES, gateOffset, c);
            FloatVector sum0 = FloatVector.zero(SPECIES);
            FloatVector sum1 = FloatVector.zero(SPECIES);
            FloatVector sum2 = FloatVector.zero(SPECIES);
            FloatVector sum3 = FloatVector.zero(SPECIES);
            FloatVector product0 = FloatVector.zero(SPECIES);
            FloatVector product1 = FloatVector.zero(SPECIES);
            FloatVector product2 = FloatVector.zero(SPECIES);
            FloatVector product3 = FloatVector.zero(SPECIES);
            int r = 0;
            for (; r + 3 < rows; r += 4) {
                int i = from + r * stride + c;
                FloatVector d0 = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(anchors);
                FloatVector d1 = fromByteBuffer(SPECIES, x, (i + stride) * Float.BYTES, ORDER).sub(anchors);
                FloatVector d2 = fromByteBuffer(SPECIES, x, (i + 2 * stride) * Float.BYTES, ORDER).sub(anchors);
                FloatVector d3 = fromByteBuffer(SPECIES, x, (i + 3 * stride) * Float.BYTES, ORDER).sub(anchors);
                FloatVector g0 = fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER);
                FloatVector g1 = fromByteBuffer(SPECIES, dy, (i + stride) * Float.BYTES, ORDER);
                FloatVector g2 = fromByteBuffer(SPECIES, dy, (i + 2 * stride) * Float.BYTES, ORDER);
                FloatVector g3 = fromByteBuffer(SPECIES, dy, (i + 3 * stride) * Float.BYTES, ORDER);
                if (gated) {
                    g0 = g0.blend(g0.mul(slope),
                            d0.fma(gateScales, gateOffsets).compare(VectorOperators.LE, threshold));
                    g1 = g1.blend(g1.mul(slope),
                            d1.fma(gateScales, gateOffsets).compare(VectorOperators.LE, threshold));
                    g2 = g2.blend(g2.mul(slope),
                            d2.fma(gateScales, gateOffsets).compare(VectorOperators.LE, threshold));
                    g3 = g3.blend(g3.mul(slope),
                            d3.fma(gateScales, gateOffsets).compare(VectorOperators.LE, threshold));
                }
                sum0 = sum0.add(g0);
                sum1 = sum1.add(g1);
                sum2 = sum2.add(g2);
                sum3 = sum3.add(g3);
                product0 = d0.fma(g0, product0);
                product1 = d1.fma(g1, product1);
                product2 = d2.fma(g2, product2);
                product3 = d3.fma(g3, product3);
            }
            for (; r < rows; r++) {
                int i = from + r * stride + c;
                FloatVector d = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(anchors);
                FloatVector g = fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER);
                if (gated) {
                    g = g.blend(g.mul(slope), d.fma(gateScales, gateOffsets).compare(VectorOperators.LE, threshold));
                }
                sum0 = sum0.add(g);
                product0 = d.fma(g, product0);
            }
            sum0.add(sum1).add(sum2.add(sum3)).intoArray(sums, c);
            product0.add(product1).add(product2.add(product3)).intoArray(products, c);
        }
        for (int c = vectorsEnd; c < width; c++) {
            float sum = 0;
            float product = 0;
            for (int r = 0; r < rows; r++) {
                int i = (from + r * stride + c) * Float.BYTES;
                float d = x.getFloat(i) - anchor[c];
                float g = gated ? gated(dy.getFloat(i), d, gateScale[c], gateOffset[c], slope, threshold)
                        : dy.getFloat(i);
                sum += g;
                product += g * d;
            }
            sums[c] = sum;
            products[c] = product;
        }
    }

    @Override
    public void rowInputGradient(ByteBuffer x, ByteBuffer dy, ByteBuffer dx, int from, int stride, int rows,
                                 int width, float[] anchor, RowGate gate, float[] dyScale, float[] xScale,
                                 float[] constant) {
        int vectorsEnd = width / LANES * LANES;
        boolean gated = gate != null;
        float[] gateScale = gated ? gate.scale() : anchor;     // read only when gated
        float[] gateOffset = gated ? gate.offset() : anchor;
        float slope = gated ? gate.negativeSlope() : 1f;
        float threshold = gated ? gate.slopeThreshold() : 0f;
        int tilesEnd = width / (2 * LANES) * (2 * LANES);
        for (int c = 0; c < tilesEnd; c += 2 * LANES) {
            FloatVector anchor0 = FloatVector.fromArray(SPECIES, anchor, c);
            FloatVector anchor1 = FloatVector.fromArray(SPECIES, anchor, c + LANES);
            FloatVector dyScale0 = FloatVector.fromArray(SPECIES, dyScale, c);
            FloatVector dyScale1 = FloatVector.fromArray(SPECIES, dyScale, c + LANES);
            FloatVector xScale0 = FloatVector.fromArray(SPECIES, xScale, c);
            FloatVector xScale1 = FloatVector.fromArray(SPECIES, xScale, c + LANES);
            FloatVector constant0 = FloatVector.fromArray(SPECIES, constant, c);
            FloatVector constant1 = FloatVector.fromArray(SPECIES, constant, c + LANES);
            FloatVector gateScale0 = FloatVector.fromArray(SPECIES, gateScale, c);
            FloatVector gateScale1 = FloatVector.fromArray(SPECIES, gateScale, c + LANES);
            FloatVector gateOffset0 = FloatVector.fromArray(SPECIES, gateOffset, c);
            FloatVector gateOffset1 = FloatVector.fromArray(SPECIES, gateOffset, c + LANES);
            for (int r = 0; r < rows; r++) {
                int i = (from + r * stride + c) * Float.BYTES;
                FloatVector centered0 = fromByteBuffer(SPECIES, x, i, ORDER).sub(anchor0);
                FloatVector centered1 = fromByteBuffer(SPECIES, x, i + VECTOR_BYTES, ORDER).sub(anchor1);
                FloatVector g0 = fromByteBuffer(SPECIES, dy, i, ORDER);
                FloatVector g1 = fromByteBuffer(SPECIES, dy, i + VECTOR_BYTES, ORDER);
                if (gated) {
                    g0 = g0.blend(g0.mul(slope),
                            centered0.fma(gateScale0, gateOffset0).compare(VectorOperators.LE, threshold));
                    g1 = g1.blend(g1.mul(slope),
                            centered1.fma(gateScale1, gateOffset1).compare(VectorOperators.LE, threshold));
                }
                centered0.fma(xScale0, g0.fma(dyScale0, constant0)).intoByteBuffer(dx, i, ORDER);
                centered1.fma(xScale1, g1.fma(dyScale1, constant1)).intoByteBuffer(dx, i + VECTOR_BYTES, ORDER);
            }
        }
        for (int chunk = 0; chunk < rows; chunk += ROWS_PER_SUM) {
            int chunkEnd = Math.min(rows, chunk + ROWS_PER_SUM);
            for (int c = tilesEnd; c < vectorsEnd; c += LANES) {
                FloatVector anchors = FloatVector.fromArray(SPECIES, anchor, c);
                FloatVector gateScales = FloatVector.fromArray(SPECIES, gateScale, c);
                FloatVector gateOffsets = FloatVector.fromArray(SPECIES, gateOffset, c);
                FloatVector dyScales = FloatVector.fromArray(SPECIES, dyScale, c);
                FloatVector xScales = FloatVector.fromArray(SPECIES, xScale, c);
                FloatVector constants = FloatVector.fromArray(SPECIES, constant, c);
                for (int r = chunk; r < chunkEnd; r++) {
                    int i = from + r * stride + c;
                    FloatVector centered = fromByteBuffer(SPECIES, x, i * Float.BYTES, ORDER).sub(anchors);
                    FloatVector g = fromByteBuffer(SPECIES, dy, i * Float.BYTES, ORDER);
                    if (gated) {
                        g = g.blend(g.mul(slope),
                                centered.fma(gateScales, gateOffsets).compare(VectorOperators.LE, threshold));
                    }
                    centered.fma(xScales, g.fma(dyScales, constants)).intoByteBuffer(dx, i * Float.BYTES, ORDER);
                }
            }
            for (int c = vectorsEnd; c < width; c++) {
                for (int r = chunk; r < chunkEnd; r++) {
                    int i = (from + r * stride + c) * Float.BYTES;
                    float centered = x.getFloat(i) - anchor[c];
                    float g = gated ? gated(dy.getFloat(i), centered, gateScale[c], gateOffset[c], slope, threshold)
                            : dy.getFloat(i);
                    dx.putFloat(i, dyScale[c] * g + xScale[c] * centered + constant[c]);
                }
            }
        }
    }

}
