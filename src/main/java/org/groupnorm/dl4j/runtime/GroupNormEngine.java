package org.groupnorm.dl4j.runtime;

import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * One way of executing GroupNorm for the layer. Every engine computes the same function (the tests hold them to it);
 * the layer picks one per call.
 *
 * @param <S> what the engine's forward pass keeps for the backward pass of the same input
 */
interface GroupNormEngine<S> {

    /** y, in the ACTIVATIONS workspace, and the statistics the backward of this input may reuse (or null). */
    Forward<S> forward(GroupNormCall call, LayerWorkspaceMgr workspaceMgr);

    /**
     * dL/dx in the ACTIVATION_GRAD workspace; writes dL/dgamma and dL/dbeta into the given views (each null when the
     * layer has no such parameter).
     *
     * @param forwardStats what {@link #forward} returned for this same input, or null: the engine then recomputes
     *                     what it needs
     */
    INDArray backward(GroupNormCall call, S forwardStats, INDArray dy, INDArray dGamma, INDArray dBeta,
                      LayerWorkspaceMgr workspaceMgr);

    /** A forward result: the output and the statistics kept for backward (null when the engine keeps none). */
    record Forward<S>(INDArray y, S stats) {
    }
}
