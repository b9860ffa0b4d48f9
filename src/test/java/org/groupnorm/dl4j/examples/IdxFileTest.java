package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.groupnorm.dl4j.examples.support.IdxFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading idx files: round trips raw and gzipped, and clear messages for files that are not what they should be. */
class IdxFileTest {

    @TempDir
    Path dir;

    @Test
    void readsWhatWasWrittenRawAndGzipped() throws IOException {
        byte[] values = new byte[2 * 3 * 4];
        for (int i = 0; i < values.length; i++) {
            values[i] = (byte) (i * 11);   // includes values above 127: read back unsigned
        }
        for (String name : new String[]{"images-idx3-ubyte", "images-idx3-ubyte.gz"}) {
            Path file = dir.resolve(name);
            IdxFile.write(file, new int[]{2, 3, 4}, values);
            IdxFile read = IdxFile.read(file, 3);
            assertArrayEquals(new int[]{2, 3, 4}, read.dimensions());
            for (int i = 0; i < values.length; i++) {
                assertEquals((i * 11) & 0xFF, read.unsigned(i), name + " value " + i);
            }
        }
    }

    @Test
    void missingFileIsNamed() {
        Path file = dir.resolve("train-images-idx3-ubyte");
        IdxFile.DataFileException e = assertThrows(IdxFile.DataFileException.class, () -> IdxFile.read(file, 3));
        assertTrue(e.getMessage().contains(file.toString()) && e.getMessage().contains("not found"), e.getMessage());
    }

    @Test
    void wrongKindOfFileSaysWhatWasExpected() throws IOException {
        Path labels = dir.resolve("labels");
        IdxFile.write(labels, new int[]{5}, new byte[5]);
        IdxFile.DataFileException e = assertThrows(IdxFile.DataFileException.class, () -> IdxFile.read(labels, 3));
        assertTrue(e.getMessage().contains(labels.toString()) && e.getMessage().contains("0x00000803")
                && e.getMessage().contains("0x00000801"), e.getMessage());

        Path text = dir.resolve("notes.txt");
        Files.writeString(text, "not an idx file at all");
        e = assertThrows(IdxFile.DataFileException.class, () -> IdxFile.read(text, 1));
        assertTrue(e.getMessage().contains("expected an idx file"), e.getMessage());
    }

    @Test
    void truncatedAndOverlongFilesAreReported() throws IOException {
        Path truncated = dir.resolve("truncated");
        Files.write(truncated, header(new int[]{10, 28, 28}, 3, 100));
        IdxFile.DataFileException e = assertThrows(IdxFile.DataFileException.class,
                () -> IdxFile.read(truncated, 3));
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("7840"), e.getMessage());

        Path overlong = dir.resolve("overlong");
        Files.write(overlong, header(new int[]{3}, 1, 4));
        e = assertThrows(IdxFile.DataFileException.class, () -> IdxFile.read(overlong, 1));
        assertTrue(e.getMessage().contains("longer than its header"), e.getMessage());

        Path headerOnly = dir.resolve("header-only");
        Files.write(headerOnly, Arrays.copyOf(header(new int[]{10, 28, 28}, 3, 0), 6));
        e = assertThrows(IdxFile.DataFileException.class, () -> IdxFile.read(headerOnly, 3));
        assertTrue(e.getMessage().contains("header"), e.getMessage());
    }

    /** An idx header for unsigned bytes followed by {@code payload} zero bytes. */
    private static byte[] header(int[] dims, int rank, int payload) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        DataOutputStream out = new DataOutputStream(bytes);
        out.writeInt(0x0800 | rank);
        for (int d : dims) {
            out.writeInt(d);
        }
        out.write(new byte[payload]);
        return bytes.toByteArray();
    }
}
