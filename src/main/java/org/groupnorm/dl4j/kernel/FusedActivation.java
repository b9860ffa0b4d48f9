package org.groupnorm.dl4j.kernel;

import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationLReLU;

/**
 * An activation the kernel applies inside its own loops, to the normalized output on the way out and to the output
 * gradient on the way in, so that GroupNorm followed by it costs no extra pass and stores nothing more. Its
 * derivative is taken at the pre-activation value, which backward recomputes from x and forward's statistics.
 *
 * @param alpha the negative slope of LEAKYRELU (unused by the others)
 */
public record FusedActivation(Kind kind, double alpha) {

    /** The activations with fused loops. */
    public enum Kind { IDENTITY, RELU, LEAKYRELU, SIGMOID, TANH, SWISH }

    public static final FusedActivation IDENTITY = new FusedActivation(Kind.IDENTITY, 0);

    /** The fused form of a DL4J activation, or null when the kernel has none (the layer then runs it itself). */
    public static FusedActivation of(IActivation activation) {
        if (activation == null || activation.equals(Activation.IDENTITY.getActivationFunction())) {
            return IDENTITY;
        }
        if (activation.equals(Activation.RELU.getActivationFunction())) {
            return new FusedActivation(Kind.RELU, 0);
        }
        if (activation instanceof ActivationLReLU) {
            return new FusedActivation(Kind.LEAKYRELU, ((ActivationLReLU) activation).getAlpha());
        }
        if (activation.equals(Activation.SIGMOID.getActivationFunction())) {
            return new FusedActivation(Kind.SIGMOID, 0);
        }
        if (activation.equals(Activation.TANH.getActivationFunction())) {
            return new FusedActivation(Kind.TANH, 0);
        }
        if (activation.equals(Activation.SWISH.getActivationFunction())) {
            return new FusedActivation(Kind.SWISH, 0);
        }
        return null;
    }

    boolean isIdentity() {
        return kind == Kind.IDENTITY;
    }

    /**
     * Whether the activation is a ReLU or LeakyReLU: the identity above 0 and a line of slope {@link #negativeSlope}
     * below it. Backward recomputes its derivative from x with a comparison ({@link #slopeThreshold}) instead of
     * storing anything.
     */
    boolean isPiecewiseLinear() {
        return kind == Kind.RELU || kind == Kind.LEAKYRELU;
    }

    /**
     * The slope of ReLU (0) or LeakyReLU (alpha) at negative pre-activation values, for the float32 loops (alpha
     * stays double for the double paths: 0.01 in float is 2e-10 off).
     */
    float negativeSlope() {
        return kind == Kind.LEAKYRELU ? (float) alpha : 0;
    }

    /**
     * The pre-activation value at or below which the gradient of ReLU/LeakyReLU takes {@link #negativeSlope}, for the
     * float32 loops' comparisons: where the derivative at 0 is DL4J's. ReLU's is 0 there (threshold 0); LeakyReLU's
     * is 1 (DL4J's {@code ActivationLReLU}, unlike PyTorch's alpha), so its threshold is the largest float below 0 and
     * {@code pre <= threshold} means {@code pre < 0}, with -0 on the side of 0.
     */
    float slopeThreshold() {
        return kind == Kind.LEAKYRELU ? -Float.MIN_VALUE : 0;
    }

    /** The activation of a pre-activation value. */
    double apply(double pre) {
        switch (kind) {
            case RELU:
                return pre > 0 ? pre : 0;
            case LEAKYRELU:
                return pre > 0 ? pre : alpha * pre;
            case SIGMOID:
                return 1 / (1 + Math.exp(-pre));
            case TANH:
                return Math.tanh(pre);
            case SWISH:
                return pre / (1 + Math.exp(-pre));
            default:
                return pre;
        }
    }

    /** d activation / d pre at a pre-activation value (at 0, ReLU's is 0 and LeakyReLU's 1, as in DL4J). */
    double derivative(double pre) {
        switch (kind) {
            case RELU:
                return pre > 0 ? 1 : 0;
            case LEAKYRELU:
                return pre >= 0 ? 1 : alpha;
            case SIGMOID: {
                double s = 1 / (1 + Math.exp(-pre));
                return s * (1 - s);
            }
            case TANH: {
                double t = Math.tanh(pre);
                return 1 - t * t;
            }
            case SWISH: {
                double s = 1 / (1 + Math.exp(-pre));
                return s * (1 + pre * (1 - s));
            }
            default:
                return 1;
        }
    }
}
