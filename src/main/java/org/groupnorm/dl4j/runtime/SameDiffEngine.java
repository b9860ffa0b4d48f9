package org.groupnorm.dl4j.runtime;

import java.util.HashMap;
import java.util.Map;
import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.GroupNorm;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.autodiff.samediff.SDVariable;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The backend-neutral engine: runs {@link GroupNorm#groupNorm} as a SameDiff graph (what executes on CUDA).
 *
 * <p>Gradients come from differentiating {@code sum(y * dy)} with dy fed as a placeholder: its gradient with
 * respect to y is exactly dy. (DL4J M2.1's stock SameDiff layer feeds dy through an external-errors function whose
 * gradient placeholder doubles every gradient; this graph has none.)
 */
final class SameDiffEngine implements GroupNormEngine<Void> {

    private static final String X = "x";
    private static final String GAMMA = "gamma";
    private static final String BETA = "beta";
    private static final String MASK = "mask";
    private static final String DY = "dy";
    private static final String Y = "y";

    private SameDiff graph;
    private GraphKey graphKey;

    @Override
    public Forward<Void> forward(GroupNormCall call, LayerWorkspaceMgr workspaceMgr) {
        requireNoActivation(call);
        INDArray y;
        try (MemoryWorkspace ignored = Nd4j.getWorkspaceManager().scopeOutOfWorkspaces()) {
            y = graphFor(call).output(placeholders(call, null), Y).get(Y);
        }
        return new Forward<>(workspaceMgr.dup(ArrayType.ACTIVATIONS, y), null);
    }

    @Override
    public INDArray backward(GroupNormCall call, Void forwardStats, INDArray dy, INDArray dGamma, INDArray dBeta,
                             LayerWorkspaceMgr workspaceMgr) {
        requireNoActivation(call);
        Map<String, INDArray> gradients;
        try (MemoryWorkspace ignored = Nd4j.getWorkspaceManager().scopeOutOfWorkspaces()) {
            SameDiff sd = graphFor(call);
            gradients = sd.calculateGradients(placeholders(call, dy), differentiated(call.gamma() != null,
                    call.beta() != null));
        }
        if (dGamma != null) {
            dGamma.assign(gradients.get(GAMMA));
        }
        if (dBeta != null) {
            dBeta.assign(gradients.get(BETA));
        }
        return workspaceMgr.dup(ArrayType.ACTIVATION_GRAD, gradients.get(X));
    }

    private static Map<String, INDArray> placeholders(GroupNormCall call, INDArray dy) {
        Map<String, INDArray> values = new HashMap<>();
        values.put(X, cOrder(call.x()));
        if (call.gamma() != null) {
            values.put(GAMMA, call.gamma());
        }
        if (call.beta() != null) {
            values.put(BETA, call.beta());
        }
        if (call.mask() != null) {
            values.put(MASK, call.mask().castTo(call.x().dataType()));
        }
        if (dy != null) {
            values.put(DY, cOrder(dy));
        }
        return values;
    }

    /** M2.1's SameDiff mis-differentiates some ops on 'f'-order placeholders (DL4J's RNN layers emit those). */
    private static INDArray cOrder(INDArray array) {
        return array.ordering() == 'c' ? array : array.dup('c');
    }

    /** The graph for this call's settings, built once and rebuilt only when they change. */
    private SameDiff graphFor(GroupNormCall call) {
        GraphKey key = new GraphKey(call.layout(), call.groups(), call.eps(), call.gamma() != null,
                call.beta() != null, call.mask() != null, call.x().dataType());
        if (!key.equals(graphKey)) {
            graph = build(key);
            graphKey = key;
        }
        return graph;
    }

    private static SameDiff build(GraphKey key) {
        SameDiff sd = SameDiff.create();
        int rank = key.layout().rank();
        SDVariable x = sd.placeHolder(X, key.dataType(), dynamic(rank));
        SDVariable gamma = key.scale() ? sd.placeHolder(GAMMA, key.dataType(), -1) : null;
        SDVariable beta = key.center() ? sd.placeHolder(BETA, key.dataType(), -1) : null;
        SDVariable mask = key.masked() ? sd.placeHolder(MASK, key.dataType(), -1, -1) : null;
        SDVariable y = GroupNorm.groupNorm(sd, x, gamma, beta, mask, key.groups(), key.eps(), key.layout())
                .rename(Y);
        SDVariable dy = sd.placeHolder(DY, key.dataType(), dynamic(rank));
        sd.setLossVariables(y.mul(dy).sum());
        // Every input is a placeholder, and SameDiff differentiates placeholders only when named here.
        sd.createGradFunction(differentiated(key.scale(), key.center()));
        return sd;
    }

    /** The placeholders to differentiate: x, and gamma and beta where the layer has them. */
    private static String[] differentiated(boolean scale, boolean center) {
        java.util.List<String> names = new java.util.ArrayList<>(java.util.List.of(X));
        if (scale) {
            names.add(GAMMA);
        }
        if (center) {
            names.add(BETA);
        }
        return names.toArray(new String[0]);
    }

    private static long[] dynamic(int rank) {
        long[] shape = new long[rank];
        java.util.Arrays.fill(shape, -1);
        return shape;
    }

    private record GraphKey(TensorLayout layout, int groups, double eps, boolean scale, boolean center, boolean masked,
                            DataType dataType) {
    }

    /** This engine checks the SameDiff definition of GroupNorm alone; activations run on the other engines. */
    private static void requireNoActivation(GroupNormCall call) {
        if (!call.hasIdentityActivation()) {
            throw new IllegalStateException("GroupNorm's SAMEDIFF engine runs GroupNorm without an activation (got "
                    + call.activation() + "); use the AUTO, KERNEL or PORTABLE engine");
        }
    }
}
