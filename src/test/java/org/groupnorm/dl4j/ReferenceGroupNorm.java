package org.groupnorm.dl4j;

/**
 * GroupNorm written straight from the paper's formula with plain loops in double precision: the independent
 * reference for the layer. Gradients come from central differences of this forward, not from a derived formula.
 */
public final class ReferenceGroupNorm {

    private ReferenceGroupNorm() {
    }

    /**
     * @param x     c-order values of an array of the given shape and layout
     * @param gamma per-channel scale, or null for scale 1
     * @param beta  per-channel shift, or null for shift 0
     * @param mask  per (example, position) presence, [N * S], or null
     */
    public static double[] forward(double[] x, long[] shape, TensorLayout layout, int groups, double eps, double[] gamma,
                            double[] beta, double[] mask) {
        int n = (int) shape[0];
        int c = (int) shape[layout.channelAxis()];
        int s = (int) layout.spatialSize(shape);
        int perGroup = c / groups;
        double[] y = new double[x.length];
        for (int example = 0; example < n; example++) {
            for (int g = 0; g < groups; g++) {
                double sum = 0;
                double count = 0;
                for (int ch = g * perGroup; ch < (g + 1) * perGroup; ch++) {
                    for (int p = 0; p < s; p++) {
                        double w = mask == null ? 1 : mask[example * s + p];
                        sum += w * x[offset(layout, example, ch, p, c, s)];
                        count += w;
                    }
                }
                double mean = count == 0 ? 0 : sum / count;
                double squares = 0;
                for (int ch = g * perGroup; ch < (g + 1) * perGroup; ch++) {
                    for (int p = 0; p < s; p++) {
                        double w = mask == null ? 1 : mask[example * s + p];
                        double d = x[offset(layout, example, ch, p, c, s)] - mean;
                        squares += w * d * d;
                    }
                }
                double variance = count == 0 ? 0 : squares / count;
                for (int ch = g * perGroup; ch < (g + 1) * perGroup; ch++) {
                    for (int p = 0; p < s; p++) {
                        int i = offset(layout, example, ch, p, c, s);
                        double w = mask == null ? 1 : mask[example * s + p];
                        double normalized = (x[i] - mean) / Math.sqrt(variance + eps);
                        double affine = (gamma == null ? 1 : gamma[ch]) * normalized + (beta == null ? 0 : beta[ch]);
                        y[i] = w * affine;
                    }
                }
            }
        }
        return y;
    }

    /** d(sum(forward(x) * dy))/dx by central differences. */
    static double[] inputGradient(double[] x, long[] shape, TensorLayout layout, int groups, double eps,
                                  double[] gamma, double[] beta, double[] mask, double[] dy) {
        double[] grad = new double[x.length];
        double h = 1e-5;
        for (int i = 0; i < x.length; i++) {
            double original = x[i];
            x[i] = original + h;
            double plus = dot(forward(x, shape, layout, groups, eps, gamma, beta, mask), dy);
            x[i] = original - h;
            double minus = dot(forward(x, shape, layout, groups, eps, gamma, beta, mask), dy);
            x[i] = original;
            grad[i] = (plus - minus) / (2 * h);
        }
        return grad;
    }

    /** d(sum(forward(x) * dy))/dgamma by central differences. */
    static double[] gammaGradient(double[] x, long[] shape, TensorLayout layout, int groups, double eps,
                                  double[] gamma, double[] beta, double[] mask, double[] dy) {
        double[] grad = new double[gamma.length];
        double h = 1e-5;
        for (int ch = 0; ch < gamma.length; ch++) {
            double original = gamma[ch];
            gamma[ch] = original + h;
            double plus = dot(forward(x, shape, layout, groups, eps, gamma, beta, mask), dy);
            gamma[ch] = original - h;
            double minus = dot(forward(x, shape, layout, groups, eps, gamma, beta, mask), dy);
            gamma[ch] = original;
            grad[ch] = (plus - minus) / (2 * h);
        }
        return grad;
    }

    /** Where element (example, channel, flattened position) lives in a c-order array of this layout. */
    static int offset(TensorLayout layout, int example, int channel, int position, int channels, int positions) {
        return layout.channelsLast()
                ? (example * positions + position) * channels + channel
                : (example * channels + channel) * positions + position;
    }

    private static double dot(double[] a, double[] b) {
        double sum = 0;
        for (int i = 0; i < a.length; i++) {
            sum += a[i] * b[i];
        }
        return sum;
    }
}
