package org.groupnorm.dl4j.runtime;

import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The arrays and settings of one GroupNorm evaluation, already validated by the layer.
 *
 * @param gamma per-channel scale, or null when the layer has none (scale 1)
 * @param beta  per-channel shift, or null when the layer has none (shift 0)
 * @param mask  [N, S] per-position presence (recurrent and FF input), or null
 * @param activation applied to the normalized output (identity for plain GroupNorm)
 */
record GroupNormCall(INDArray x, INDArray gamma, INDArray beta, INDArray mask, int groups, double eps,
                     IActivation activation, TensorLayout layout) {

    boolean hasIdentityActivation() {
        return activation instanceof ActivationIdentity;
    }
}
