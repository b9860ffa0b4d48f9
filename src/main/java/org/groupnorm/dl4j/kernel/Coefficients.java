package org.groupnorm.dl4j.kernel;

/**
 * The GroupNorm formulas, once. Every path turns a group's statistics into per-channel coefficients here and then
 * only applies them elementwise:
 * <pre>
 *   forward:  y  = (x - anchor) * scale_c + offset_c
 *   backward: dx = dyScale_c * dy + xScale * (x - anchor) + constant
 * </pre>
 * with {@code scale_c = rstd * gamma_c}, {@code offset_c = beta_c - (mean - anchor) * scale_c},
 * {@code dyScale_c = rstd * gamma_c}, {@code xScale = -rstd^3 * mean(gamma*dy*(x - mean))} and
 * {@code constant = -rstd * mean(gamma*dy) - (mean - anchor) * xScale}: the paper's normalization and its exact
 * gradient, {@code dx = rstd * (gamma*dy - mean(gamma*dy) - xhat * mean(gamma*dy * xhat))}.
 *
 * <p>The anchor is the mean rounded to float: {@code x - anchor} is exact in float for x near the mean, and the
 * rounding {@code mean - anchor} is folded into the coefficients in double, so a mean that dwarfs the standard
 * deviation costs float32 no accuracy. Arrays are indexed by channel, over the channels {@code [from, to)} of one
 * group.
 */
final class Coefficients {

    private Coefficients() {
    }

    /** The value subtracted from x in every elementwise loop. */
    static float anchor(double mean) {
        return (float) mean;
    }

    /**
     * Forward coefficients of one group's channels.
     *
     * @param gamma per-channel scale, or null for scale 1; {@code beta} likewise, null for shift 0
     */
    static void forward(double mean, double rstd, double[] gamma, double[] beta, int from, int to, double[] scale,
                        double[] offset) {
        double meanResidual = mean - anchor(mean);
        for (int c = from; c < to; c++) {
            scale[c] = gamma == null ? rstd : gamma[c] * rstd;
            offset[c] = (beta == null ? 0 : beta[c]) - meanResidual * scale[c];
        }
    }

    /**
     * Backward coefficients of one group's channels from their sums over the group's {@code count} present elements.
     *
     * @param sumDy          per channel, sum of dy (at {@code sumsBase + c})
     * @param sumDyCentered  per channel, on entry the sum of dy * (x - anchor), on return the sum of dy * (x - mean),
     *                       which the gamma gradient needs
     * @param gamma          per-channel scale, or null for scale 1
     */
    static void backward(double mean, double rstd, int count, double[] gamma, int from, int to, double[] sumDy,
                         double[] sumDyCentered, int sumsBase, double[] dyScale, double[] xScale, double[] constant) {
        double meanResidual = mean - anchor(mean);
        double weightedDy = 0;          // sum over the group of gamma_c * dy
        double weightedDyCentered = 0;  // sum over the group of gamma_c * dy * (x - mean)
        for (int c = from; c < to; c++) {
            sumDyCentered[sumsBase + c] -= meanResidual * sumDy[sumsBase + c];
            double g = gamma == null ? 1 : gamma[c];
            weightedDy += g * sumDy[sumsBase + c];
            weightedDyCentered += g * sumDyCentered[sumsBase + c];
        }
        double meanTerm = count == 0 ? 0 : rstd * weightedDy / count;
        double centeredTerm = count == 0 ? 0 : rstd * rstd * rstd * weightedDyCentered / count;
        for (int c = from; c < to; c++) {
            dyScale[c] = rstd * (gamma == null ? 1 : gamma[c]);
            xScale[c] = -centeredTerm;
            constant[c] = meanResidual * centeredTerm - meanTerm;
        }
    }
}
