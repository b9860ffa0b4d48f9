package org.groupnorm.dl4j.kernel;

import java.lang.ref.Reference;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Weight Standardization on the CPU: the formulas of {@code runtime.WeightStandardization} as loops over host memory
 * in double, one output channel (row of K = nIn x kH x kW weights) at a time. A convolution's weights are small, so
 * what costs here is not arithmetic but ND4J's per-operation overhead: the whole-array version takes about 30
 * operations per training step and layer (0.4-1.6 ms each call at 64x64x3x3 on this project's VM), these loops
 * microseconds.
 *
 * <p>Arrays must be c-contiguous host arrays of a type {@link #supports} accepts, shaped [O, ...].
 */
public final class WeightStandardizationKernel {

    private WeightStandardizationKernel() {
    }

    /** Whether these arrays can be read and written in place here (CPU backend, c-contiguous, a supported type). */
    public static boolean supports(INDArray... arrays) {
        for (INDArray array : arrays) {
            if (!GroupNormKernel.supports(array) || !GroupNormKernel.isDirectlyAddressable(array)) {   // CPU, type
                return false;
            }
        }
        return true;
    }

    /** Writes the standardized {@code weights} into {@code out} (same shape). */
    public static void standardize(INDArray weights, INDArray out, double eps) {
        int rows = (int) weights.size(0);
        int perRow = (int) (weights.length() / rows);
        Elements source = Elements.of(weights);
        Elements target = Elements.of(out);
        double[] row = Scratch.doubles(Scratch.Slot.WEIGHTS, perRow);
        for (int o = 0; o < rows; o++) {
            source.read(o * perRow, row, 0, perRow);
            standardizeRow(row, perRow, eps);
            target.write(o * perRow, row, 0, perRow);
        }
        Reference.reachabilityFence(weights);   // the views above do not keep the arrays' memory alive
        Reference.reachabilityFence(out);
    }

    /**
     * Turns {@code gradient}, the loss gradient with respect to the standardized weights, into the gradient with
     * respect to the raw {@code weights}, in place: {@code dW = r (dW' - mean(dW') - W' mean(dW' W'))} per row.
     */
    public static void backward(INDArray weights, INDArray gradient, double eps) {
        int rows = (int) weights.size(0);
        int perRow = (int) (weights.length() / rows);
        Elements source = Elements.of(weights);
        Elements gradients = Elements.of(gradient);
        double[] standardized = Scratch.doubles(Scratch.Slot.WEIGHTS, perRow);
        double[] grad = Scratch.doubles(Scratch.Slot.DY, perRow);
        for (int o = 0; o < rows; o++) {
            source.read(o * perRow, standardized, 0, perRow);
            double rstd = standardizeRow(standardized, perRow, eps);
            gradients.read(o * perRow, grad, 0, perRow);
            double sumGrad = 0;
            double sumGradTimesStandardized = 0;
            for (int k = 0; k < perRow; k++) {
                sumGrad += grad[k];
                sumGradTimesStandardized += grad[k] * standardized[k];
            }
            double meanGrad = sumGrad / perRow;
            double meanGradTimesStandardized = sumGradTimesStandardized / perRow;
            for (int k = 0; k < perRow; k++) {
                grad[k] = rstd * (grad[k] - meanGrad - standardized[k] * meanGradTimesStandardized);
            }
            gradients.write(o * perRow, grad, 0, perRow);
        }
        Reference.reachabilityFence(weights);   // the views above do not keep the arrays' memory alive
        Reference.reachabilityFence(gradient);
    }

    /** Standardizes {@code row[0..count)} in place (mean and biased variance, two passes); returns 1/sqrt(var+eps). */
    private static double standardizeRow(double[] row, int count, double eps) {
        double sum = 0;
        for (int k = 0; k < count; k++) {
            sum += row[k];
        }
        double mean = sum / count;
        double squares = 0;
        for (int k = 0; k < count; k++) {
            double centered = row[k] - mean;
            squares += centered * centered;
        }
        double rstd = 1 / Math.sqrt(squares / count + eps);
        for (int k = 0; k < count; k++) {
            row[k] = (row[k] - mean) * rstd;
        }
        return rstd;
    }
}
