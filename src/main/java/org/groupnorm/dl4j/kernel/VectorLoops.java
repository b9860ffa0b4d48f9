package org.groupnorm.dl4j.kernel;

import static jdk.incubator.vector.FloatVector.fromByteBuffer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
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
     *
     * Floats are loaded and stored as their int bits, and lanes change type by viewAs*Lanes, not reinterpretAs*:
     * every Vector API call is a chain of inlined methods ending in an intrinsic. Where the chain ends past HotSpot's
     * inlining depth (MaxInlineLevel, 15 in JDK 17) the call is deferred to a later inlining round, which can give
     * the intrinsic up and fall back to the Vector API's Java code (HALF through the layer then took 7x as long).
     * These loops run under the per-block lambdas of the staged paths, so every level counts: reinterpretAsFloats
     * is one level deeper than viewAsFloatingLanes (see docs/PERFORMANCE.md, "the JIT-order slowdowns were
     * HotSpot's inlining depth").
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
            IntVector finite = shifted.viewAsFloatingLanes().mul(0x1p112f).viewAsIntegralLanes();
            finite.blend(shifted.or(0x7f800000), magnitude.compare(VectorOperators.GE, 0x7c00))
                    .or(bits.and(0x80000000))
                    .intoByteBuffer(floats, (to + i) * Float.BYTES, ORDER);   // a float's bits are the float
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
            IntVector bits = IntVector.fromByteBuffer(INT_SPECIES, floats, (from + i) * Float.BYTES, ORDER);
            IntVector magnitude = bits.and(0x7fffffff);
            IntVector normal = magnitude.add(((15 - 127) << 23) + 0xfff)
                    .add(magnitude.lanewise(VectorOperators.LSHR, 13).and(1)).lanewise(VectorOperators.LSHR, 13);
            IntVector subnormal = magnitude.viewAsFloatingLanes().add(SUBNORMAL_MAGIC).viewAsIntegralLanes()
                    .sub(magicBits);
            IntVector half = normal.blend(subnormal, magnitude.compare(VectorOperators.LT, 113 << 23))
                    .blend(0x7c00, magnitude.compare(VectorOperators.GE, (127 + 16) << 23))
                    .blend(0x7e00, magnitude.compare(VectorOperators.GT, 0x7f800000))
                    .or(bits.lanewise(VectorOperators.LSHR, 16).and(0x8000));
            ((ShortVector) half.convertShape(VectorOperators.I2S, SHORT_SPECIES, 0))
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
            FloatVector twoToN = shifted.viewAsIntegralLanes().sub(0x4B400000 - 127)
                    .lanewise(VectorOperators.LSHL, 23).viewAsFloatingLanes();
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
     * The row loops walk a block in memory order: row by row, each row's whole width before the next, the per-column
     * coefficients and partial sums in arrays of one row's width that stay in the first-level cache. A block's rows
     * are side by side when it spans the example's channels, so each pass is one sequential stream. Walking tiles of a
     * few vectors down all the rows instead, with their coefficients and sums in registers (these loops until
     * 2026-12-07), read every row in pieces a full row apart: NHWC forward+backward took 1.8-1.9x the channels-first
     * time at 8x64x56x56 and 2.9-3.0x at 2x256x56x56, now 1.1-1.2x and 1.3-1.4x on the same 256-bit CPU
     * (docs/PERFORMANCE.md, "Channels-last row loops in memory order").
     */

    @Override
    public void rowMoments(ByteBuffer x, int from, int stride, int rows, int width, float[] shift, float[] sums,
                           float[] squares) {
        int vectorsEnd = width / LANES * LANES;
        float[] partialSums = Scratch.floats(Scratch.FloatSlot.PARTIAL_SUMS, width);
        float[] partialSquares = Scratch.floats(Scratch.FloatSlot.PARTIAL_PRODUCTS, width);
        Arrays.fill(sums, 0, width, 0f);
        Arrays.fill(squares, 0, width, 0f);
        for (int part = 0; part < rows; part += ROWS_PER_PARTIAL) {
            int partEnd = Math.min(rows, part + ROWS_PER_PARTIAL);
            Arrays.fill(partialSums, 0, width, 0f);
            Arrays.fill(partialSquares, 0, width, 0f);
            for (int r = part; r < partEnd; r++) {
                int rowStart = from + r * stride;
                for (int c = 0; c < vectorsEnd; c += LANES) {
                    FloatVector d = fromByteBuffer(SPECIES, x, (rowStart + c) * Float.BYTES, ORDER)
                            .sub(FloatVector.fromArray(SPECIES, shift, c));
                    FloatVector.fromArray(SPECIES, partialSums, c).add(d).intoArray(partialSums, c);
                    d.fma(d, FloatVector.fromArray(SPECIES, partialSquares, c)).intoArray(partialSquares, c);
                }
                for (int c = vectorsEnd; c < width; c++) {
                    float d = x.getFloat((rowStart + c) * Float.BYTES) - shift[c];
                    partialSums[c] += d;
                    partialSquares[c] += d * d;
                }
            }
            addInto(partialSums, sums, width);
            addInto(partialSquares, squares, width);
        }
    }

    @Override
    public void rowNormalize(ByteBuffer x, ByteBuffer y, int from, int stride, int rows, int width, float[] anchor,
                             float[] scale, float[] offset, RowGate gate) {
        int vectorsEnd = width / LANES * LANES;
        boolean gated = gate != null;
        float slope = gated ? gate.negativeSlope() : 1f;
        for (int r = 0; r < rows; r++) {
            int rowStart = from + r * stride;
            for (int c = 0; c < vectorsEnd; c += LANES) {
                int i = (rowStart + c) * Float.BYTES;
                FloatVector v = fromByteBuffer(SPECIES, x, i, ORDER).sub(FloatVector.fromArray(SPECIES, anchor, c))
                        .fma(FloatVector.fromArray(SPECIES, scale, c), FloatVector.fromArray(SPECIES, offset, c));
                if (gated) {
                    v = v.blend(v.mul(slope), v.compare(VectorOperators.LE, 0f));
                }
                v.intoByteBuffer(y, i, ORDER);
            }
            for (int c = vectorsEnd; c < width; c++) {
                int i = (rowStart + c) * Float.BYTES;
                float v = (x.getFloat(i) - anchor[c]) * scale[c] + offset[c];
                y.putFloat(i, gated && v <= 0 ? slope * v : v);
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
        float[] partialSums = Scratch.floats(Scratch.FloatSlot.PARTIAL_SUMS, width);
        float[] partialProducts = Scratch.floats(Scratch.FloatSlot.PARTIAL_PRODUCTS, width);
        Arrays.fill(sums, 0, width, 0f);
        Arrays.fill(products, 0, width, 0f);
        for (int part = 0; part < rows; part += ROWS_PER_PARTIAL) {
            int partEnd = Math.min(rows, part + ROWS_PER_PARTIAL);
            Arrays.fill(partialSums, 0, width, 0f);
            Arrays.fill(partialProducts, 0, width, 0f);
            for (int r = part; r < partEnd; r++) {
                int rowStart = from + r * stride;
                for (int c = 0; c < vectorsEnd; c += LANES) {
                    int i = (rowStart + c) * Float.BYTES;
                    FloatVector d = fromByteBuffer(SPECIES, x, i, ORDER)
                            .sub(FloatVector.fromArray(SPECIES, anchor, c));
                    FloatVector g = fromByteBuffer(SPECIES, dy, i, ORDER);
                    if (gated) {
                        g = g.blend(g.mul(slope), d.fma(FloatVector.fromArray(SPECIES, gateScale, c),
                                FloatVector.fromArray(SPECIES, gateOffset, c)).compare(VectorOperators.LE, threshold));
                    }
                    FloatVector.fromArray(SPECIES, partialSums, c).add(g).intoArray(partialSums, c);
                    d.fma(g, FloatVector.fromArray(SPECIES, partialProducts, c)).intoArray(partialProducts, c);
                }
                for (int c = vectorsEnd; c < width; c++) {
                    int i = (rowStart + c) * Float.BYTES;
                    float d = x.getFloat(i) - anchor[c];
                    float g = gated ? gated(dy.getFloat(i), d, gateScale[c], gateOffset[c], slope, threshold)
                            : dy.getFloat(i);
                    partialSums[c] += g;
                    partialProducts[c] += g * d;
                }
            }
            addInto(partialSums, sums, width);
            addInto(partialProducts, products, width);
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
        for (int r = 0; r < rows; r++) {
            int rowStart = from + r * stride;
            for (int c = 0; c < vectorsEnd; c += LANES) {
                int i = (rowStart + c) * Float.BYTES;
                FloatVector centered = fromByteBuffer(SPECIES, x, i, ORDER)
                        .sub(FloatVector.fromArray(SPECIES, anchor, c));
                FloatVector g = fromByteBuffer(SPECIES, dy, i, ORDER);
                if (gated) {
                    g = g.blend(g.mul(slope), centered.fma(FloatVector.fromArray(SPECIES, gateScale, c),
                            FloatVector.fromArray(SPECIES, gateOffset, c)).compare(VectorOperators.LE, threshold));
                }
                FloatVector gradientTerm = g.fma(FloatVector.fromArray(SPECIES, dyScale, c),
                        FloatVector.fromArray(SPECIES, constant, c));
                centered.fma(FloatVector.fromArray(SPECIES, xScale, c), gradientTerm).intoByteBuffer(dx, i, ORDER);
            }
            for (int c = vectorsEnd; c < width; c++) {
                int i = (rowStart + c) * Float.BYTES;
                float centered = x.getFloat(i) - anchor[c];
                float g = gated ? gated(dy.getFloat(i), centered, gateScale[c], gateOffset[c], slope, threshold)
                        : dy.getFloat(i);
                dx.putFloat(i, dyScale[c] * g + xScale[c] * centered + constant[c]);
            }
        }
    }

    /** {@code totals[c] += partials[c]} for the first {@code width} columns. */
    private static void addInto(float[] partials, float[] totals, int width) {
        for (int c = 0; c < width; c++) {
            totals[c] += partials[c];
        }
    }
}
