package org.groupnorm.dl4j.kernel;

/**
 * The statistics of the float32 paths: mean and variance from one pass of sums of {@code x - shift} and
 * {@code (x - shift)^2}, where the shift is the mean of the slab's first {@value #SHIFT_SAMPLE} elements (in memory
 * order). One-pass moments lose accuracy only when the shift is far from the mean compared to the standard deviation;
 * past {@value #MAX_SHIFT_IN_STDS} standard deviations, {@link #needsExactShift} tells the caller to take the pass
 * again with the mean just found as the shift, which makes it exact to rounding. A constant slab has shift = mean
 * and variance exactly 0.
 */
final class ShiftedMoments {

    static final int SHIFT_SAMPLE = 256;
    private static final double MAX_SHIFT_IN_STDS = 4;

    /** The shift, as the float the loops subtracted. */
    float shift;
    double mean;
    double variance;

    /** Sets the moments from the sums over {@code count} elements taken with {@code shift}. */
    void set(float shift, double sum, double squares, long count) {
        double meanOffset = sum / count;
        this.shift = shift;
        this.mean = shift + meanOffset;
        this.variance = squares / count - meanOffset * meanOffset;
    }

    /** Whether the shift was too far from the mean for one-pass accuracy (false for NaN: NaN stays NaN). */
    boolean needsExactShift() {
        double meanOffset = mean - shift;
        return meanOffset * meanOffset > MAX_SHIFT_IN_STDS * MAX_SHIFT_IN_STDS * variance;
    }

    /** The shift for the second pass: the mean, rounded to the float the loops subtract. */
    float exactShift() {
        return (float) mean;
    }

    /**
     * Sets the moments of a group with no element (every position padded): mean 0 and variance 0, as the general
     * path has them.
     */
    void setEmpty() {
        set(0f, 0, 0, 1);
    }

    /** Stores the mean and 1 / sqrt(variance + eps) as the statistics of {@code unit}. */
    void record(GroupStats stats, int unit, double eps) {
        stats.mean[unit] = mean;
        stats.rstd[unit] = rstd(eps);
    }

    /** 1 / sqrt(variance + eps); rounding can make a tiny variance negative, which counts as 0. */
    double rstd(double eps) {
        return 1.0 / Math.sqrt(Math.max(0, variance) + eps);
    }
}
