package org.groupnorm.dl4j.kernel;

/**
 * The path for every call the float32 loops do not take: float64, bfloat16, very short rows (masked or not). A slab
 * is read once into a {@code double[]} buffer that stays in cache; its statistics take two passes over that buffer (a
 * shifted sum for the mean, then the sum of squared deviations) over the present elements only; the coefficients are
 * {@link Coefficients}' and all arithmetic is in double. Padded elements (mask 0) are zeroed before anything reads
 * them, whatever they hold (NaN too), output 0 and receive 0.
 */
final class GeneralPath {

    private GeneralPath() {
    }

    static void forward(Elements in, Elements out, double[] masks, Geometry geo, double[] gamma, double[] beta,
                        double eps, FusedActivation activation, GroupStats stats) {
        Parallel.forEach(geo.units(), (long) geo.units() * geo.slabSize,
                unit -> forwardSlab(in, out, masks, unit, geo, gamma, beta, eps, activation, stats));
    }

    static void backward(Elements in, Elements gradOut, Elements gradIn, double[] masks, Geometry geo, double[] gamma,
                         double[] beta, FusedActivation activation, GroupStats stats, double[] sumDy,
                         double[] sumDyCentered) {
        Parallel.forEach(geo.units(), (long) geo.units() * geo.slabSize, unit -> backwardSlab(in, gradOut, gradIn,
                masks, unit, geo, gamma, beta, activation, stats, sumDy, sumDyCentered));
    }

    private static void forwardSlab(Elements in, Elements out, double[] masks, int unit, Geometry geo,
                                    double[] gamma, double[] beta, double eps, FusedActivation activation,
                                    GroupStats stats) {
        int n = unit / geo.groups;
        int g = unit % geo.groups;
        double[] xs = Scratch.doubles(Scratch.Slot.X, geo.slabSize);
        double[] weights = masks == null ? null : geo.weights(masks, n);
        geo.read(in, n, g, xs);
        if (weights != null) {
            dropPadding(xs, weights, geo.slabSize);
        }
        int count = weights == null ? geo.slabSize : presentCount(weights, geo.slabSize);
        double mean = count == 0 ? 0 : mean(xs, weights, geo.slabSize, count);
        double variance = count == 0 ? 0 : variance(xs, weights, geo.slabSize, count, mean);
        double rstd = 1.0 / Math.sqrt(variance + eps);
        stats.mean[unit] = mean;
        stats.rstd[unit] = rstd;
        int first = g * geo.perGroup;
        double[] scale = Scratch.doubles(Scratch.Slot.SCALE, geo.channels);
        double[] offset = Scratch.doubles(Scratch.Slot.OFFSET, geo.channels);
        Coefficients.forward(mean, rstd, gamma, beta, first, first + geo.perGroup, scale, offset);
        double anchor = Coefficients.anchor(mean);
        for (int j = 0; j < geo.perGroup; j++) {
            for (int s = 0; s < geo.positions; s++) {
                int i = geo.index(j, s);
                xs[i] = activation.apply((xs[i] - anchor) * scale[first + j] + offset[first + j]);
            }
        }
        if (weights != null) {
            dropPadding(xs, weights, geo.slabSize);
        }
        geo.write(out, n, g, xs);
    }

    private static void backwardSlab(Elements in, Elements gradOut, Elements gradIn, double[] masks, int unit,
                                     Geometry geo, double[] gamma, double[] beta, FusedActivation activation,
                                     GroupStats stats, double[] sumDy, double[] sumDyCentered) {
        int n = unit / geo.groups;
        int g = unit % geo.groups;
        double[] xs = Scratch.doubles(Scratch.Slot.X, geo.slabSize);
        double[] dys = Scratch.doubles(Scratch.Slot.DY, geo.slabSize);
        double[] weights = masks == null ? null : geo.weights(masks, n);
        geo.read(in, n, g, xs);
        geo.read(gradOut, n, g, dys);
        if (weights != null) {
            dropPadding(xs, weights, geo.slabSize);
            dropPadding(dys, weights, geo.slabSize);
        }
        double mean = stats.mean[unit];
        double anchor = Coefficients.anchor(mean);
        int first = g * geo.perGroup;
        int sumsBase = n * geo.channels;
        if (!activation.isIdentity()) {
            // The output gradient through the activation, at the pre-activation value forward computed.
            double[] scale = Scratch.doubles(Scratch.Slot.SCALE, geo.channels);
            double[] offset = Scratch.doubles(Scratch.Slot.OFFSET, geo.channels);
            Coefficients.forward(mean, stats.rstd[unit], gamma, beta, first, first + geo.perGroup, scale, offset);
            for (int j = 0; j < geo.perGroup; j++) {
                for (int s = 0; s < geo.positions; s++) {
                    int i = geo.index(j, s);
                    dys[i] *= activation.derivative((xs[i] - anchor) * scale[first + j] + offset[first + j]);
                }
            }
        }
        for (int j = 0; j < geo.perGroup; j++) {
            double dySum = 0;
            double dyCenteredSum = 0;
            if (geo.channelsLast) {
                for (int s = 0; s < geo.positions; s++) {
                    int i = geo.index(j, s);
                    dySum += dys[i];
                    dyCenteredSum += dys[i] * (xs[i] - anchor);
                }
            } else {
                dySum = shiftedSum(dys, j * geo.positions, geo.positions, 0);
                dyCenteredSum = centeredDot(dys, xs, j * geo.positions, geo.positions, anchor);
            }
            sumDy[sumsBase + first + j] = dySum;
            sumDyCentered[sumsBase + first + j] = dyCenteredSum;
        }
        int count = weights == null ? geo.slabSize : presentCount(weights, geo.slabSize);
        double[] dyScale = Scratch.doubles(Scratch.Slot.DY_SCALE, geo.channels);
        double[] xScale = Scratch.doubles(Scratch.Slot.X_SCALE, geo.channels);
        double[] constant = Scratch.doubles(Scratch.Slot.CONSTANT, geo.channels);
        Coefficients.backward(mean, stats.rstd[unit], count, gamma, first, first + geo.perGroup, sumDy,
                sumDyCentered, sumsBase, dyScale, xScale, constant);
        for (int j = 0; j < geo.perGroup; j++) {
            int c = first + j;
            for (int s = 0; s < geo.positions; s++) {
                int i = geo.index(j, s);
                xs[i] = dyScale[c] * dys[i] + xScale[c] * (xs[i] - anchor) + constant[c];
            }
        }
        if (weights != null) {
            dropPadding(xs, weights, geo.slabSize);
        }
        geo.write(gradIn, n, g, xs);
    }

    private static double mean(double[] xs, double[] weights, int size, int count) {
        // Shift by one present sample: keeps the sum small when |mean| >> std, and a constant slab sums to exactly 0.
        int first = 0;
        while (weights != null && weights[first] == 0) {
            first++;
        }
        double shift = xs[first];
        if (weights != null) {
            double sum = 0;
            for (int i = 0; i < size; i++) {
                sum += weights[i] * (xs[i] - shift);
            }
            return shift + sum / count;
        }
        return shift + shiftedSum(xs, 0, size, shift) / count;
    }

    /**
     * Sum of (xs[i] - shift) over [from, from + length). Four independent accumulators: one chain of dependent
     * additions would wait on the adder's latency at every element, and Java may not reorder them itself.
     */
    private static double shiftedSum(double[] xs, int from, int length, double shift) {
        double s0 = 0;
        double s1 = 0;
        double s2 = 0;
        double s3 = 0;
        int i = from;
        int end = from + length;
        for (; i + 3 < end; i += 4) {
            s0 += xs[i] - shift;
            s1 += xs[i + 1] - shift;
            s2 += xs[i + 2] - shift;
            s3 += xs[i + 3] - shift;
        }
        for (; i < end; i++) {
            s0 += xs[i] - shift;
        }
        return (s0 + s1) + (s2 + s3);
    }

    /** The mean of (xs[i] - mean)^2 over the present elements. */
    private static double variance(double[] xs, double[] weights, int size, int count, double mean) {
        double s0 = 0;
        double s1 = 0;
        double s2 = 0;
        double s3 = 0;
        int i = 0;
        if (weights == null) {
            for (; i + 3 < size; i += 4) {
                double d0 = xs[i] - mean;
                double d1 = xs[i + 1] - mean;
                double d2 = xs[i + 2] - mean;
                double d3 = xs[i + 3] - mean;
                s0 += d0 * d0;
                s1 += d1 * d1;
                s2 += d2 * d2;
                s3 += d3 * d3;
            }
        }
        for (; i < size; i++) {
            double d = xs[i] - mean;
            s0 += weights == null ? d * d : weights[i] * d * d;
        }
        return ((s0 + s1) + (s2 + s3)) / count;
    }

    /** Sum of dy[i] * (x[i] - anchor) over [from, from + length), four accumulators as in {@link #shiftedSum}. */
    private static double centeredDot(double[] dy, double[] xs, int from, int length, double anchor) {
        double s0 = 0;
        double s1 = 0;
        double s2 = 0;
        double s3 = 0;
        int i = from;
        int end = from + length;
        for (; i + 3 < end; i += 4) {
            s0 += dy[i] * (xs[i] - anchor);
            s1 += dy[i + 1] * (xs[i + 1] - anchor);
            s2 += dy[i + 2] * (xs[i + 2] - anchor);
            s3 += dy[i + 3] * (xs[i + 3] - anchor);
        }
        for (; i < end; i++) {
            s0 += dy[i] * (xs[i] - anchor);
        }
        return (s0 + s1) + (s2 + s3);
    }

    /** Zeroes padded elements, whatever they hold (NaN too), so that no later product can bring them back. */
    private static void dropPadding(double[] values, double[] weights, int size) {
        for (int i = 0; i < size; i++) {
            if (weights[i] == 0) {
                values[i] = 0;
            }
        }
    }

    private static int presentCount(double[] weights, int size) {
        int count = 0;
        for (int i = 0; i < size; i++) {
            count += weights[i] != 0 ? 1 : 0;
        }
        return count;
    }
}
