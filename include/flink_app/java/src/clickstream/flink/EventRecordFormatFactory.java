package clickstream.flink;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DeserializationFormatFactory;
import org.apache.flink.table.factories.DynamicTableFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.table.types.logical.RowType;

import java.util.Collections;
import java.util.Set;

/**
 * The {@code clickstream-event} format: one event record per message, parsed once.
 *
 * <p>The 'raw' format plus JSON_VALUE per field parses every record once per field; this format parses it once
 * and fills the table's physical columns by name: {@code record} (STRING) is the message text exactly as 'raw'
 * gives it, {@code one_json_object} (BOOLEAN) says whether the record is one JSON object and nothing else,
 * {@code client_timestamp_ms} (BIGINT) is the instant of a plain wire timestamp (else NULL), and every other
 * STRING column is the record's top-level member of that name as {@code JSON_VALUE(record, '$.name')} returns
 * it. See {@link EventRecordDeserializer} for why the values are the same.
 */
public final class EventRecordFormatFactory implements DeserializationFormatFactory {

    public static final String IDENTIFIER = "clickstream-event";

    @Override
    public DecodingFormat<DeserializationSchema<RowData>> createDecodingFormat(
            DynamicTableFactory.Context context, ReadableConfig formatOptions) {
        FactoryUtil.validateFactoryOptions(this, formatOptions);
        return new DecodingFormat<DeserializationSchema<RowData>>() {
            @Override
            public DeserializationSchema<RowData> createRuntimeDecoder(
                    DynamicTableSource.Context sourceContext, DataType physicalDataType) {
                RowType rowType = (RowType) physicalDataType.getLogicalType();
                checkColumns(rowType);
                TypeInformation<RowData> producedType =
                        sourceContext.createTypeInformation(physicalDataType);
                return new EventRecordDeserializer(rowType.getFieldNames(), producedType);
            }

            @Override
            public ChangelogMode getChangelogMode() {
                return ChangelogMode.insertOnly();
            }
        };
    }

    /** Refuses a column this format cannot fill, naming it (a typo here would otherwise read as NULL). */
    static void checkColumns(RowType rowType) {
        for (RowType.RowField field : rowType.getFields()) {
            LogicalTypeRoot expected = expectedType(field.getName());
            if (field.getType().getTypeRoot() != expected) {
                throw new ValidationException(
                        String.format(
                                "format '%s': column '%s' has type %s; expected %s",
                                IDENTIFIER,
                                field.getName(),
                                field.getType(),
                                expected == LogicalTypeRoot.VARCHAR ? "STRING" : expected.name()));
            }
        }
    }

    private static LogicalTypeRoot expectedType(String column) {
        if (EventRecordDeserializer.JSON_OBJECT_COLUMN.equals(column)) {
            return LogicalTypeRoot.BOOLEAN;
        }
        if (EventRecordDeserializer.WIRE_TIME_MS_COLUMN.equals(column)) {
            return LogicalTypeRoot.BIGINT;
        }
        return LogicalTypeRoot.VARCHAR;
    }

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Collections.emptySet();
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Collections.emptySet();
    }
}
