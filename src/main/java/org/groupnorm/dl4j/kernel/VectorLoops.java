package org.groupnorm.dl4j.kernel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
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

    /** The SIMD width in use, for logs and benchmarks. */
    static String describe() {
        return SPECIES.vectorBitSize() + "-bit SIMD, " + LANES + " float lanes";
    }

    @Override
    public ByteBuffer view(INDArray array) {
        return Elements.bytes(array);
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
                FloatVector d0 = load(x, i).sub(shift);
                FloatVector d1 = load(x, i + LANES).sub(shift);
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

    @Override
    public void normalize(ByteBuffer x, ByteBuffer y, int from, int length, float mean, float scale, float offset) {
        int end = from + length;
        int vectorsEnd = from + length / LANES * LANES;
        for (int i = from; i < vectorsEnd; i += LANES) {
            load(x, i).sub(mean).fma(scale, offset).intoByteBuffer(y, i * Float.BYTES, ORDER);
        }
        for (int i = vectorsEnd; i < end; i++) {
            y.putFloat(i * Float.BYTES, (x.getFloat(i * Float.BYTES) - mean) * scale + offset);
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
                FloatVector dy0 = load(dy, i);
                FloatVector dy1 = load(dy, i + LANES);
                sum0 = sum0.add(dy0);
                sum1 = sum1.add(dy1);
                products0 = load(x, i).sub(mean).fma(dy0, products0);
                products1 = load(x, i + LANES).sub(mean).fma(dy1, products1);
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
            FloatVector gradient = load(dy, i).fma(dyCoefficient, constant);
            load(x, i).sub(mean).fma(xCoefficients, gradient).intoByteBuffer(dx, i * Float.BYTES, ORDER);
        }
        for (int i = vectorsEnd; i < end; i++) {
            float centered = x.getFloat(i * Float.BYTES) - mean;
            dx.putFloat(i * Float.BYTES, dyCoefficient * dy.getFloat(i * Float.BYTES) + xCoefficient * centered
                    + constant);
        }
    }

    private static FloatVector load(ByteBuffer buffer, int element) {
        return FloatVector.fromByteBuffer(SPECIES, buffer, element * Float.BYTES, ORDER);
    }
}
