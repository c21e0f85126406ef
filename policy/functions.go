package policy

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// safePGFunctions are PostgreSQL builtins that only compute: they read no
// server files, change no state beyond the statement and reach no other
// session, so a SELECT may call them. Any other function (user-defined ones
// included) is a `call` on a Function resource, refused unless permitted;
// the dangerous builtins map to administrative actions (dangerousFunctions).
var safePGFunctions = set(`
count sum avg min max array_agg string_agg bool_and bool_or every json_agg jsonb_agg json_object_agg
jsonb_object_agg stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp
percentile_cont percentile_disc mode rank dense_rank row_number ntile lag lead first_value last_value
nth_value cume_dist percent_rank grouping
lower upper length char_length character_length octet_length bit_length substring substr trim btrim
ltrim rtrim concat concat_ws replace split_part left right position strpos lpad rpad repeat reverse
initcap md5 sha224 sha256 sha384 sha512 encode decode format quote_ident quote_literal quote_nullable
regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table regexp_like
regexp_count regexp_instr regexp_substr translate starts_with to_hex ascii chr overlay unistr normalize
abs ceil ceiling floor round trunc mod power pow sqrt cbrt exp ln log log10 sign greatest least random
random_normal width_bucket div gcd lcm factorial pi degrees radians sin cos tan asin acos atan atan2
setseed scale min_scale trim_scale
date_trunc date_part extract age to_char to_date to_timestamp to_number make_date make_time
make_timestamp make_timestamptz make_interval clock_timestamp statement_timestamp
transaction_timestamp timeofday now timezone justify_days justify_hours justify_interval date_bin
isfinite
json_build_object jsonb_build_object json_build_array jsonb_build_array to_json to_jsonb row_to_json
array_to_json json_extract_path jsonb_extract_path json_extract_path_text jsonb_extract_path_text
jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists jsonb_path_match
json_array_length jsonb_array_length jsonb_set jsonb_insert jsonb_pretty json_each jsonb_each
json_each_text jsonb_each_text json_array_elements jsonb_array_elements json_array_elements_text
jsonb_array_elements_text json_object_keys jsonb_object_keys json_typeof jsonb_typeof
jsonb_strip_nulls json_strip_nulls json_object jsonb_object json_populate_record jsonb_populate_record
json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset
array_length array_lower array_upper array_ndims array_dims array_to_string unnest cardinality
array_position array_positions array_append array_prepend array_cat array_remove array_replace
string_to_array generate_series generate_subscripts array_fill trim_array array_sample array_shuffle
gen_random_uuid pg_typeof version current_database current_schema current_schemas current_setting
pg_backend_pid pg_sleep pg_sleep_for pg_sleep_until format_type pg_size_pretty
pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size pg_column_size
has_table_privilege has_column_privilege has_schema_privilege has_database_privilege
has_function_privilege pg_has_role obj_description col_description pg_get_viewdef
pg_get_indexdef pg_get_constraintdef pg_get_expr num_nulls num_nonnulls nullif coalesce
inet_client_addr inet_server_addr host network masklen text
pg_table_is_visible pg_type_is_visible pg_function_is_visible pg_operator_is_visible
pg_opclass_is_visible pg_opfamily_is_visible pg_collation_is_visible pg_conversion_is_visible
pg_statistics_obj_is_visible pg_ts_config_is_visible pg_ts_dict_is_visible pg_ts_parser_is_visible
pg_ts_template_is_visible pg_get_userbyid pg_get_triggerdef pg_get_ruledef pg_get_partkeydef
pg_get_partition_constraintdef pg_get_statisticsobjdef pg_get_statisticsobjdef_columns
pg_get_statisticsobjdef_expressions pg_get_function_arguments pg_get_function_result
pg_get_function_identity_arguments pg_get_functiondef pg_get_function_sqlbody pg_get_serial_sequence
pg_get_replica_identity_index pg_encoding_to_char pg_char_to_encoding pg_tablespace_location
pg_describe_object pg_identify_object pg_identify_object_as_address pg_get_object_address
pg_column_is_updatable pg_relation_is_updatable pg_index_column_has_property pg_index_has_property
pg_indexam_has_property pg_get_keywords pg_options_to_table aclexplode shobj_description
pg_relation_filenode pg_relation_filepath pg_get_constraintdef pg_tablespace_size pg_database_size
pg_get_publication_tables pg_relation_is_publishable array_remove unnest getdatabaseencoding
pg_partition_ancestors pg_partition_root pg_partition_tree pg_client_encoding
`)

func set(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

// builtinCatalog knows pg_catalog's functions (pg_proc).
type builtinCatalog interface {
	Builtin(name string) (volatility byte, ok bool)
}

// unsafeStableFunctions are builtins PostgreSQL marks immutable or stable
// that still must not be called freely: they show other sessions'
// statements, server files or configuration, or read whole tables by name
// past the analysis (table_to_xml and its kin).
// Every volatile builtin is unsafe unless safePGFunctions lists it.
var unsafeStableFunctions = set(`
pg_stat_get_activity pg_stat_get_backend_activity pg_stat_get_backend_client_addr
pg_stat_get_backend_client_port pg_stat_get_backend_userid pg_stat_get_backend_pid
pg_stat_get_backend_dbid pg_stat_get_backend_wait_event pg_stat_get_backend_wait_event_type
pg_stat_get_backend_subxact pg_get_backend_memory_contexts pg_stat_get_progress_info
pg_show_all_settings pg_show_all_file_settings pg_hba_file_rules pg_ident_file_mappings
pg_current_logfile pg_control_system pg_control_checkpoint pg_control_recovery pg_control_init
pg_get_wal_replay_pause_state pg_stat_get_wal_receiver pg_stat_get_wal_senders
pg_stat_get_replication_slot pg_get_replication_slots pg_stat_get_subscription
pg_stat_statements pg_stat_statements_info pg_prepared_xact pg_lock_status pg_blocking_pids
pg_safe_snapshot_blocking_pids pg_isolation_test_session_is_blocked
pg_settings_get_flags pg_config pg_get_catalog_foreign_keys
table_to_xml table_to_xml_and_xmlschema schema_to_xml schema_to_xml_and_xmlschema schema_to_xmlschema
database_to_xml database_to_xml_and_xmlschema database_to_xmlschema
`)

// safeFunction reports whether a call is to a computing-only builtin: one
// sluice lists, or one pg_proc marks immutable or stable (it cannot change
// the database) and sluice does not hold back. A schema other than
// pg_catalog makes it a user function, whatever its name.
func safeFunction(fc *pg.FuncCall, cat Catalog) bool {
	if len(fc.Funcname) > 1 && !strings.EqualFold(fc.Funcname[0].GetString_().GetSval(), "pg_catalog") {
		return false
	}
	name := funcName(fc)
	if safePGFunctions[name] {
		return true
	}
	if unsafeStableFunctions[name] {
		return false
	}
	b, ok := cat.(builtinCatalog)
	if !ok {
		return false
	}
	v, ok := b.Builtin(name)
	return ok && (v == 'i' || v == 's')
}
