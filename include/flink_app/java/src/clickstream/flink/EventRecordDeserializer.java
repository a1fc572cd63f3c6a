package clickstream.flink;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.DeserializationFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectReader;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.SerializationFeature;

import java.util.Collection;
import java.util.List;
import java.util.Map;

/**
 * Turns one message into the row of {@link EventRecordFormatFactory}, with one JSON parse.
 *
 * <p>Same values as the SQL it replaces, by construction:
 *
 * <ul>
 *   <li>{@code record}: {@code StringData.fromBytes}, as the 'raw' format does for UTF-8;
 *   <li>a member column: Flink's JSON_VALUE reads the record's text with Jackson (an ObjectMapper configured as
 *       in {@code SqlJsonUtils}: floats as BigDecimal) into Java objects, takes the member in lax mode (NULL when
 *       the record is not an object, does not parse, or the member is missing, JSON null, an object or an array)
 *       and returns {@code String.valueOf} of it. This class does the same parse once for all members;
 *   <li>{@code one_json_object}: the record starts with '{' after JSON whitespace, and its text is one JSON value with
 *       nothing but whitespace after it (the SQL checked the same by parsing the record inside an array followed
 *       by an end marker). Content after the first value does not change the members, as with JSON_VALUE, which
 *       ignores it.
 * </ul>
 */
public final class EventRecordDeserializer implements DeserializationSchema<RowData> {

    private static final long serialVersionUID = 1L;

    /** The column that says whether the record is one JSON object alone. */
    public static final String JSON_OBJECT_COLUMN = "one_json_object";
    /** The column that holds the record's text. */
    public static final String RECORD_COLUMN = "record";

    private static final ObjectMapper MAPPER =
            new ObjectMapper(new JsonFactory())
                    .configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true)
                    .configure(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS, true);
    private static final ObjectReader READER = MAPPER.reader().forType(Object.class);

    private static final int RECORD = 0;
    private static final int JSON_OBJECT = 1;
    private static final int MEMBER = 2;

    private final String[] columns;
    private final int[] kinds;
    private final TypeInformation<RowData> producedType;

    public EventRecordDeserializer(List<String> columnNames, TypeInformation<RowData> producedType) {
        this.columns = columnNames.toArray(new String[0]);
        this.kinds = new int[columns.length];
        for (int i = 0; i < columns.length; i++) {
            kinds[i] =
                    RECORD_COLUMN.equals(columns[i])
                            ? RECORD
                            : JSON_OBJECT_COLUMN.equals(columns[i]) ? JSON_OBJECT : MEMBER;
        }
        this.producedType = producedType;
    }

    @Override
    public RowData deserialize(byte[] message) {
        GenericRowData row = new GenericRowData(columns.length);
        if (message == null) {
            return row;
        }
        StringData record = StringData.fromBytes(message);
        String text = record.toString();
        Object root = null;
        boolean alone = false;
        try (JsonParser parser = MAPPER.getFactory().createParser(text)) {
            root = READER.readValue(parser);
            alone = startsWithBrace(text) && parser.nextToken() == null;
        } catch (Exception e) {
            alone = false; // root keeps the first value if only what follows it is bad (as JSON_VALUE)
        }
        Map<?, ?> object = root instanceof Map ? (Map<?, ?>) root : null;
        for (int i = 0; i < columns.length; i++) {
            switch (kinds[i]) {
                case RECORD:
                    row.setField(i, record);
                    break;
                case JSON_OBJECT:
                    row.setField(i, alone);
                    break;
                default:
                    row.setField(i, object == null ? null : scalar(object.get(columns[i])));
            }
        }
        return row;
    }

    /** JSON_VALUE's STRING result for a member's Java value: NULL for null, objects and arrays. */
    private static StringData scalar(Object value) {
        if (value == null || value instanceof Map || value instanceof Collection) {
            return null;
        }
        return StringData.fromString(String.valueOf(value));
    }

    /** The SQL's REGEXP '^[ \t\n\r]*\{'. */
    private static boolean startsWithBrace(String text) {
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '{') {
                return true;
            }
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return false;
            }
        }
        return false;
    }

    @Override
    public boolean isEndOfStream(RowData nextElement) {
        return false;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return producedType;
    }
}
