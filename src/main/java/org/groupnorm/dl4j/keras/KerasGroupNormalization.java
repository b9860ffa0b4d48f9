package org.groupnorm.dl4j.keras;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.deeplearning4j.nn.api.layers.LayerConstraint;
import org.deeplearning4j.nn.conf.constraint.NonNegativeConstraint;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.modelimport.keras.KerasLayer;
import org.deeplearning4j.nn.modelimport.keras.exceptions.InvalidKerasConfigurationException;
import org.deeplearning4j.nn.modelimport.keras.exceptions.UnsupportedKerasConfigurationException;
import org.deeplearning4j.nn.modelimport.keras.utils.KerasLayerUtils;
import org.groupnorm.dl4j.GroupNormParamInitializer;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Maps Keras' {@code GroupNormalization} layer (tf.keras 2.11+, Keras 3, and tensorflow-addons'
 * {@code Addons>GroupNormalization}) onto {@link GroupNormalization} during DL4J's Keras import. Call
 * {@link #register()} once, then import as usual:
 * <pre>{@code
 * KerasGroupNormalization.register();
 * ComputationGraph net = KerasModelImport.importKerasModelAndWeights("model.h5");
 * }</pre>
 *
 * <p>What maps: {@code groups} (-1: one channel per group), {@code axis} (the last axis: channels-last; 1:
 * channels-first; checked against the layout DL4J gives the layer's input), {@code epsilon}, {@code center},
 * {@code scale}, the gamma and beta weights, L1/L2/L1L2 {@code gamma_regularizer}/{@code beta_regularizer}, and a
 * {@code NonNeg} {@code gamma_constraint}/{@code beta_constraint}. Any other value fails the import with an
 * {@link UnsupportedKerasConfigurationException} or {@link InvalidKerasConfigurationException} naming the layer.
 *
 * <p>The DL4J layer is made in {@link #getOutputType}: whether Keras' axis is the channel axis depends on the input's
 * rank and layout, which DL4J knows only then. (DL4J calls that before it asks for the layer; doing the checks there
 * also means their exceptions reach the caller as they are, while DL4J wraps any exception from a custom layer's
 * constructor in one that blames the constructor.)
 */
public class KerasGroupNormalization extends KerasLayer {

    /** The class name tf.keras 2.11+ and Keras 3 write. */
    public static final String KERAS_CLASS_NAME = "GroupNormalization";
    /** The class name tensorflow-addons writes. */
    public static final String ADDONS_CLASS_NAME = "Addons>GroupNormalization";

    // Keras' defaults for keys a config may leave out; epsilon differs from our layer's 1e-5.
    private static final int KERAS_DEFAULT_GROUPS = 32;
    private static final int KERAS_DEFAULT_AXIS = -1;
    private static final double KERAS_DEFAULT_EPSILON = 1e-3;

    private static final String GAMMA = "gamma";
    private static final String BETA = "beta";

    /**
     * Makes DL4J's Keras import map both Keras class names to this class. Idempotent; call it before
     * {@code KerasModelImport.importKeras...}.
     */
    public static synchronized void register() {
        KerasLayer.registerCustomLayer(KERAS_CLASS_NAME, KerasGroupNormalization.class);
        KerasLayer.registerCustomLayer(ADDONS_CLASS_NAME, KerasGroupNormalization.class);
    }

    /** The constructor DL4J's import calls by reflection, with the layer's whole Keras config. */
    public KerasGroupNormalization(Map<String, Object> layerConfig)
            throws InvalidKerasConfigurationException, UnsupportedKerasConfigurationException {
        super(layerConfig, true);
    }

    /** Builds the DL4J layer for this input and returns its output type (the input's). */
    @Override
    public InputType getOutputType(InputType... inputTypes)
            throws InvalidKerasConfigurationException, UnsupportedKerasConfigurationException {
        if (inputTypes.length != 1 || inputTypes[0] == null) {
            throw new InvalidKerasConfigurationException(describe() + ": takes exactly one input, got "
                    + inputTypes.length);
        }
        InputType inputType = inputTypes[0];
        this.layer = toGroupNormalization(inputType);
        return layer.getOutputType(-1, inputType);
    }

    /** One per parameter the DL4J layer has: gamma when {@code scale}, beta when {@code center}. */
    @Override
    public int getNumParams() {
        Map<String, Object> config = innerConfig();
        return (flag(config, "scale") ? 1 : 0) + (flag(config, "center") ? 1 : 0);
    }

    /**
     * Takes gamma and beta from the file's weights, whatever prefix their names carry ({@code gn/gamma:0},
     * {@code gamma}).
     */
    @Override
    public void setWeights(Map<String, INDArray> weights) throws InvalidKerasConfigurationException {
        Map<String, INDArray> byName = new HashMap<>();
        for (Map.Entry<String, INDArray> entry : weights.entrySet()) {
            String name = entry.getKey().replaceAll(":\\d+$", "");
            byName.put(name.substring(name.lastIndexOf('/') + 1), entry.getValue());
        }
        Map<String, Object> config = innerConfig();
        this.weights = new HashMap<>();
        take(byName, GAMMA, flag(config, "scale"), GroupNormParamInitializer.GAMMA);
        take(byName, BETA, flag(config, "center"), GroupNormParamInitializer.BETA);
        if (!byName.isEmpty()) {
            throw new InvalidKerasConfigurationException(describe() + ": unexpected weights " + byName.keySet()
                    + " (a GroupNormalization layer has gamma when scale=True and beta when center=True)");
        }
    }

    private void take(Map<String, INDArray> byName, String kerasName, boolean expected, String paramKey)
            throws InvalidKerasConfigurationException {
        INDArray value = byName.remove(kerasName);
        if (expected && value == null) {
            throw new InvalidKerasConfigurationException(describe() + ": the file has no " + kerasName
                    + " weights, but the layer's config has " + (GAMMA.equals(kerasName) ? "scale" : "center")
                    + "=True");
        }
        if (value != null) {
            this.weights.put(paramKey, value);
        }
    }

    /** Our layer for Keras' config and the input type DL4J inferred. */
    private GroupNormalization toGroupNormalization(InputType inputType)
            throws InvalidKerasConfigurationException, UnsupportedKerasConfigurationException {
        Map<String, Object> config = innerConfig();
        TensorLayout layout = layoutFor(inputType, intValue(config, "axis", KERAS_DEFAULT_AXIS));
        GroupNormalization.Builder builder = new GroupNormalization.Builder()
                .eps(doubleValue(config, "epsilon", KERAS_DEFAULT_EPSILON))
                .scale(flag(config, "scale"))
                .center(flag(config, "center"))
                .dataFormat(layout)
                .nIn(TensorLayout.channelsOf(inputType));
        builder.name(layerName);
        int groups = intValue(config, "groups", KERAS_DEFAULT_GROUPS);
        if (groups == -1) {
            builder.groupSize(1);
        } else if (groups > 0) {
            builder.groups(groups);
        } else {
            throw new InvalidKerasConfigurationException(describe() + ": groups must be > 0, or -1 for one channel "
                    + "per group, got " + groups);
        }
        Penalty gammaPenalty = penalty(config, "gamma_regularizer");
        Penalty betaPenalty = penalty(config, "beta_regularizer");
        if (gammaPenalty.any() || betaPenalty.any()) {
            // Keras adds l2 * sum(w^2) to the loss, DL4J's L2 adds l2 / 2 * sum(w^2): hence the factor 2.
            builder.regularizeGammaBeta(true)
                    .l1(gammaPenalty.l1()).l2(2 * gammaPenalty.l2())
                    .l1Bias(betaPenalty.l1()).l2Bias(2 * betaPenalty.l2());
        }
        GroupNormalization gn;
        try {
            gn = builder.build();
        } catch (IllegalArgumentException e) {
            throw new InvalidKerasConfigurationException(e.getMessage() + " (input type " + inputType + ")", e);
        }
        List<LayerConstraint> constraints = new ArrayList<>();
        addConstraint(config, "gamma_constraint", GroupNormParamInitializer.GAMMA, constraints);
        addConstraint(config, "beta_constraint", GroupNormParamInitializer.BETA, constraints);
        if (!constraints.isEmpty()) {
            gn.setConstraints(constraints);
        }
        return gn;
    }

    /**
     * The layout whose channel axis is Keras' {@code axis}. Keras counts the minibatch axis, so for a rank-r input
     * axis r-1 (or -1) is channels-last and axis 1 channels-first; on rank 2 they are the same axis.
     */
    private TensorLayout layoutFor(InputType inputType, int axis) throws InvalidKerasConfigurationException {
        TensorLayout layout = inputType.getType() == InputType.Type.CNNFlat ? null : TensorLayout.of(inputType);
        if (layout == null) {
            throw new InvalidKerasConfigurationException(describe() + ": takes dense, recurrent or convolutional "
                    + "input, got " + inputType);
        }
        int rank = layout.rank();
        int resolved = axis < 0 ? axis + rank : axis;
        boolean lastAxis = resolved == rank - 1;
        if (resolved != 1 && !lastAxis) {
            throw new InvalidKerasConfigurationException(describe() + ": axis " + axis + " of a rank-" + rank
                    + " input is not supported; GroupNormalization groups the channel axis, which is the last axis "
                    + "(-1 or " + (rank - 1) + ", channels_last) or axis 1 (channels_first)");
        }
        if (layout.channelAxis() != resolved) {
            throw new InvalidKerasConfigurationException(describe() + ": axis " + axis + " is "
                    + (lastAxis ? "the last axis (channels_last)" : "axis 1 (channels_first)") + ", but DL4J imported "
                    + "this layer's input as " + layout + " with its channels on axis " + layout.channelAxis()
                    + " (input type " + inputType + ")");
        }
        return layout;
    }

    /** Keras' L1/L2 regularizer config as coefficients of Keras' penalty (sum of |w| and of w^2). */
    private Penalty penalty(Map<String, Object> config, String field) throws UnsupportedKerasConfigurationException {
        Object value = config.get(field);
        if (value == null) {
            return new Penalty(0, 0);
        }
        if (value instanceof Map<?, ?> regularizer && regularizer.get("class_name") instanceof String className
                && (regularizer.get("config") == null || regularizer.get("config") instanceof Map<?, ?>)) {
            Map<?, ?> coefficients = regularizer.get("config") == null ? Map.of() : (Map<?, ?>) regularizer.get("config");
            switch (className) {
                case "L1":
                    return new Penalty(coefficient(coefficients, "l1", 0.01), 0);
                case "L2":
                    return new Penalty(0, coefficient(coefficients, "l2", 0.01));
                case "L1L2":
                    return new Penalty(coefficient(coefficients, "l1", 0), coefficient(coefficients, "l2", 0));
                default:
                    break;
            }
        }
        throw new UnsupportedKerasConfigurationException(describe() + ": " + field + " " + value + " is not "
                + "supported; DL4J can express Keras' L1, L2 and L1L2 regularizers");
    }

    private static double coefficient(Map<?, ?> config, String key, double kerasDefault) {
        Object value = config.get(key);
        return value instanceof Number number ? number.doubleValue() : kerasDefault;
    }

    private void addConstraint(Map<String, Object> config, String field, String paramKey,
                               List<LayerConstraint> constraints) throws UnsupportedKerasConfigurationException {
        Object value = config.get(field);
        if (value == null) {
            return;
        }
        if (value instanceof Map<?, ?> constraint && "NonNeg".equals(constraint.get("class_name"))) {
            NonNegativeConstraint nonNegative = new NonNegativeConstraint();   // applied after every update, as in Keras
            nonNegative.setParams(new HashSet<>(Set.of(paramKey)));
            constraints.add(nonNegative);
            return;
        }
        throw new UnsupportedKerasConfigurationException(describe() + ": " + field + " " + value + " is not "
                + "supported; only NonNeg maps to DL4J for GroupNormalization");
    }

    private Map<String, Object> innerConfig() {
        try {
            return KerasLayerUtils.getInnerLayerConfigFromConfig(originalLayerConfig, conf);
        } catch (InvalidKerasConfigurationException e) {
            throw new IllegalStateException(describe() + ": no inner config", e);   // the constructor parsed it
        }
    }

    private boolean flag(Map<String, Object> config, String key) {
        Object value = config.get(key);
        return value == null || Boolean.TRUE.equals(value);
    }

    private int intValue(Map<String, Object> config, String key, int kerasDefault)
            throws InvalidKerasConfigurationException {
        Object value = config.get(key);
        if (value == null) {
            return kerasDefault;
        }
        if (value instanceof Number number && number.doubleValue() == number.intValue()) {
            return number.intValue();
        }
        throw new InvalidKerasConfigurationException(describe() + ": " + key + " must be an integer, got " + value);
    }

    private double doubleValue(Map<String, Object> config, String key, double kerasDefault)
            throws InvalidKerasConfigurationException {
        Object value = config.get(key);
        if (value == null) {
            return kerasDefault;
        }
        if (value instanceof Number number) {
            return number.doubleValue();
        }
        throw new InvalidKerasConfigurationException(describe() + ": " + key + " must be a number, got " + value);
    }

    /** "Keras GroupNormalization 'gn'": how every message of this mapper starts. */
    private String describe() {
        return "Keras " + className + " '" + layerName + "'";
    }

    /** Coefficients of Keras' penalty l1 * sum(|w|) + l2 * sum(w^2). */
    private record Penalty(double l1, double l2) {
        boolean any() {
            return l1 != 0 || l2 != 0;
        }
    }
}
