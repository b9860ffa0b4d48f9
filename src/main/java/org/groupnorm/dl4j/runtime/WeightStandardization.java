package org.groupnorm.dl4j.runtime;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.reduce3.Dot;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * Weight Standardization (Qiao et al. 2019), forward and backward, per output channel o of a convolution's weights
 * {@code W[o, ...]} (K = nIn x kH x kW values each):
 * <pre>
 *   forward:  W'_o  = (W_o - mean(W_o)) * r_o,          r_o = 1 / sqrt(var(W_o) + eps), biased variance
 *   backward: dW_o  = r_o * (dW'_o - mean(dW'_o) - W'_o * mean(dW'_o * W'_o))
 * </pre>
 * ND4J operations only (whole-array, any backend), O(weights) each; HALF/BFLOAT16 weights are computed in float.
 * This is the portable version; on the CPU {@link org.groupnorm.dl4j.kernel.WeightStandardizationKernel} computes the
 * same in loops, without ND4J's per-operation overhead.
 */
public final class WeightStandardization {

    private WeightStandardization() {
    }

    /**
     * Writes the standardized {@code weights} into {@code out} (same shape, any floating type).
     *
     * @return r, the per-output-channel 1 / sqrt(var + eps), shape [O], in the working type
     */
    public static INDArray standardize(INDArray weights, INDArray out, double eps) {
        INDArray outRows = rows(out);
        INDArray work = isWorkingType(out.dataType()) ? outRows : Nd4j.create(DataType.FLOAT, outRows.shape());
        work.assign(rows(weights));
        work.subiColumnVector(work.mean(1));
        INDArray norm = work.norm2(1);
        INDArray rstd = Transforms.pow(norm.muli(norm).divi(work.size(1)).addi(eps), -0.5, false);
        work.muliColumnVector(rstd);
        if (work != outRows) {
            outRows.assign(work);
        }
        return rstd;
    }

    /**
     * Turns {@code gradient}, the loss gradient with respect to the standardized weights, into the gradient with
     * respect to the raw {@code weights}, in place.
     */
    public static void backward(INDArray weights, INDArray gradient, double eps) {
        INDArray gradientRows = rows(gradient);
        INDArray grad = isWorkingType(gradient.dataType()) ? gradientRows : gradientRows.castTo(DataType.FLOAT);
        INDArray standardized = Nd4j.create(grad.dataType(), grad.shape());
        INDArray rstd = standardize(weights, standardized, eps);
        long perChannel = grad.size(1);
        INDArray meanGrad = grad.mean(1);
        INDArray meanGradTimesStandardized = Nd4j.exec(new Dot(grad, standardized, 1)).divi(perChannel);
        grad.subiColumnVector(meanGrad);
        grad.subi(standardized.muliColumnVector(meanGradTimesStandardized));
        grad.muliColumnVector(rstd);
        if (grad != gradientRows) {
            gradientRows.assign(grad);
        }
    }

    /** The [O, K] view of weights shaped [O, nIn, kH, kW] (c order, as DL4J stores them). */
    private static INDArray rows(INDArray weights) {
        return weights.reshape('c', weights.size(0), weights.length() / weights.size(0));
    }

    private static boolean isWorkingType(DataType type) {
        return type == DataType.FLOAT || type == DataType.DOUBLE;
    }
}
