package org.groupnorm.dl4j.runtime;

import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The CPU engine: {@link GroupNormKernel} over the layer's arrays, writing straight into workspace arrays. It keeps
 * the forward pass's statistics so backward does not recompute them.
 */
final class KernelEngine implements GroupNormEngine {

    private final GroupNormKernel.GroupStats stats = new GroupNormKernel.GroupStats();
    /** The input the statistics belong to; backward recomputes them for any other array. */
    private INDArray statsInput;

    @Override
    public INDArray forward(GroupNormCall call, LayerWorkspaceMgr workspaceMgr) {
        INDArray x = addressable(call.x(), ArrayType.FF_WORKING_MEM, workspaceMgr);
        INDArray y = workspaceMgr.createUninitialized(ArrayType.ACTIVATIONS, x.dataType(), x.shape(), 'c');
        GroupNormKernel.forward(x, call.gamma(), call.beta(), call.mask(), call.groups(), call.eps(), call.layout(),
                y, stats);
        statsInput = call.x();
        return y;
    }

    @Override
    public INDArray backward(GroupNormCall call, INDArray dy, INDArray dGamma, INDArray dBeta,
                             LayerWorkspaceMgr workspaceMgr) {
        INDArray x = addressable(call.x(), ArrayType.BP_WORKING_MEM, workspaceMgr);
        if (statsInput != call.x()) {
            INDArray unused = workspaceMgr.createUninitialized(ArrayType.BP_WORKING_MEM, x.dataType(), x.shape(), 'c');
            GroupNormKernel.forward(x, call.gamma(), call.beta(), call.mask(), call.groups(), call.eps(),
                    call.layout(), unused, stats);
            statsInput = call.x();
        }
        INDArray gradOut = addressable(dy, ArrayType.BP_WORKING_MEM, workspaceMgr);
        INDArray dx = workspaceMgr.createUninitialized(ArrayType.ACTIVATION_GRAD, x.dataType(), x.shape(), 'c');
        GroupNormKernel.backward(x, call.gamma(), call.mask(), gradOut, call.groups(), call.layout(), stats, dx,
                dGamma, dBeta);
        return dx;
    }

    /** The array itself when the kernel can address it, else a c-order copy in the given workspace. */
    private static INDArray addressable(INDArray array, ArrayType type, LayerWorkspaceMgr workspaceMgr) {
        return GroupNormKernel.isDirectlyAddressable(array) ? array : workspaceMgr.dup(type, array, 'c');
    }
}
