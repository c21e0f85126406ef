package policy

import "errors"

// AnalyzeMySQL is filled in below.
func AnalyzeMySQL(sql, database string, cat Catalog) Analysis {
	return Analysis{Err: errors.New("mysql analyzer not yet available")}
}
