package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The four loops {@link FloatRows} is made of, each over one run of contiguous float32 elements of a c-contiguous host
 * array. Two implementations compute the same values: {@link VectorLoops} with explicit SIMD (the JDK's incubating
 * Vector API, when the JVM was started with {@code --add-modules jdk.incubator.vector}) and {@link BlockLoops} with
 * plain Java loops that HotSpot vectorizes by itself where it can. Reductions are returned in double; every float
 * partial sum they add up holds at most a few dozen terms.
 *
 * @param <B> how the implementation addresses the array's memory
 */
interface FloatLoops<B extends Buffer> {

    /** The array's elements, without a copy. */
    B view(INDArray array);

    /** sums.plain = sum of (x - shift), sums.weighted = sum of (x - shift)^2, over [from, from + length). */
    void moments(B x, int from, int length, float shift, Sums sums);

    /** y = (x - mean) * scale + offset over [from, from + length). */
    void normalize(B x, B y, int from, int length, float mean, float scale, float offset);

    /** sums.plain = sum of dy, sums.weighted = sum of dy * (x - mean), over [from, from + length). */
    void gradientSums(B x, B dy, int from, int length, float mean, Sums sums);

    /** dx = dyCoefficient * dy + xCoefficient * (x - mean) + constant over [from, from + length). */
    void inputGradient(B x, B dy, B dx, int from, int length, float mean, float dyCoefficient, float xCoefficient,
                       float constant);

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
