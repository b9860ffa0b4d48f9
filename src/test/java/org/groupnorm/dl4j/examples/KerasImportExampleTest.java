package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.junit.jupiter.api.Test;

/** The Keras import example runs as the README says: its model matches Keras, and fine-tuning improves it. */
class KerasImportExampleTest {

    @Test
    void importsMatchesKerasAndFineTunes() throws Exception {
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream original = System.out;
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            KerasImportExample.main(new String[]{"--data", FashionMnist.EMBEDDED_FOLDER});
        } finally {
            System.setOut(original);
        }
        String output = captured.toString(StandardCharsets.UTF_8);
        assertTrue(output.contains("gn1: 16 channels in 4 groups, eps 0.001, layout NHWC"), output);
        assertTrue(output.contains("(match)"), output);
        // Keras measured 0.7135 on the same 2,000 test images (examples/data/keras/fashion_gn_cnn/case.json).
        assertTrue(output.contains("Imported model, 2000 test images: accuracy 0.7135"), output);
        assertTrue(output.contains("Fine-tuned 1 epoch on 2000 images"), output);
    }
}
