package org.groupnorm.dl4j.runtime;

import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.kernel.FusedActivation;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.groupnorm.dl4j.kernel.GroupStats;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The CPU engine: {@link GroupNormKernel} over the layer's arrays, writing straight into workspace arrays. Its
 * forward hands back the statistics, so the backward of the same input does not recompute them.
 */
final class KernelEngine implements GroupNormEngine<GroupStats> {

    @Override
    public Forward<GroupStats> forward(GroupNormCall call, LayerWorkspaceMgr workspaceMgr) {
        INDArray x = addressable(call.x(), ArrayType.FF_WORKING_MEM, workspaceMgr);
        INDArray y = workspaceMgr.createUninitialized(ArrayType.ACTIVATIONS, x.dataType(), x.shape(), 'c');
        GroupStats stats = GroupNormKernel.forward(x, call.gamma(), call.beta(), call.mask(), call.groups(),
                call.eps(), fused(call), call.layout(), y);
        return new Forward<>(y, stats);
    }

    @Override
    public INDArray backward(GroupNormCall call, GroupStats forwardStats, INDArray dy, INDArray dGamma, INDArray dBeta,
                             LayerWorkspaceMgr workspaceMgr) {
        INDArray x = addressable(call.x(), ArrayType.BP_WORKING_MEM, workspaceMgr);
        GroupStats stats = forwardStats;
        if (stats == null) {
            INDArray unused = workspaceMgr.createUninitialized(ArrayType.BP_WORKING_MEM, x.dataType(), x.shape(), 'c');
            stats = GroupNormKernel.forward(x, call.gamma(), call.beta(), call.mask(), call.groups(), call.eps(),
                    fused(call), call.layout(), unused);
        }
        INDArray gradOut = addressable(dy, ArrayType.BP_WORKING_MEM, workspaceMgr);
        INDArray dx = workspaceMgr.createUninitialized(ArrayType.ACTIVATION_GRAD, x.dataType(), x.shape(), 'c');
        GroupNormKernel.backward(x, call.gamma(), call.beta(), call.mask(), gradOut, call.groups(), fused(call),
                call.layout(), stats, dx, dGamma, dBeta);
        return dx;
    }

    /** Whether the kernel runs this call's activation in its loops (else the layer picks another engine). */
    static boolean fuses(GroupNormCall call) {
        return FusedActivation.of(call.activation()) != null;
    }

    private static FusedActivation fused(GroupNormCall call) {
        return FusedActivation.of(call.activation());
    }

    /** The array itself when the kernel can address it, else a c-order copy in the given workspace. */
    private static INDArray addressable(INDArray array, ArrayType type, LayerWorkspaceMgr workspaceMgr) {
        return GroupNormKernel.isDirectlyAddressable(array) ? array : workspaceMgr.dup(type, array, 'c');
    }
}
