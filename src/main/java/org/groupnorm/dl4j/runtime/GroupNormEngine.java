package org.groupnorm.dl4j.runtime;

import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * One way of executing GroupNorm for the layer. Both engines compute the same function (the tests hold them to it);
 * the layer picks one per call.
 */
interface GroupNormEngine {

    /** y, in the ACTIVATIONS workspace. */
    INDArray forward(GroupNormCall call, LayerWorkspaceMgr workspaceMgr);

    /**
     * dL/dx in the ACTIVATION_GRAD workspace; writes dL/dgamma and dL/dbeta into the given views (each null when the
     * layer has no such parameter).
     */
    INDArray backward(GroupNormCall call, INDArray dy, INDArray dGamma, INDArray dBeta,
                      LayerWorkspaceMgr workspaceMgr);
}
