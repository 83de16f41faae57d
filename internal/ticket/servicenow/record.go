package servicenow

import (
	"bytes"
	"encoding/json"
	"errors"
)

// record is a change_request or incident row as the Table API returns it
// with sysparm_display_value=all. Dot-walked fields keep their dotted name
// as the key.
type record struct {
	SysID              field `json:"sys_id"`
	Number             field `json:"number"`
	State              field `json:"state"`
	ShortDescription   field `json:"short_description"`
	AssignedTo         field `json:"assigned_to"`
	AssignedToUserName field `json:"assigned_to.user_name"`
	AssignedToEmail    field `json:"assigned_to.email"`
	AssignmentGroup    field `json:"assignment_group"`
	StartDate          field `json:"start_date"`
	EndDate            field `json:"end_date"`
	CmdbCI             field `json:"cmdb_ci"`
}

// field is one field with sysparm_display_value=all: the stored value
// (a sys_id for a reference, UTC for a date) and its label. Reference
// fields also carry a "link", which Escrow does not follow.
type field struct {
	DisplayValue string `json:"display_value"`
	Value        string `json:"value"`
}

var errNotAll = errors.New("a field is not a {display_value, value} object: was sysparm_display_value=all ignored?")

// UnmarshalJSON accepts the documented object, and "" or null for a field
// that is empty (some releases send an empty reference that way). A
// non-empty plain string is refused: it means display values were not
// requested as Escrow asked, and a date might then be in the API user's
// time zone.
func (f *field) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) || bytes.Equal(b, []byte(`""`)) {
		*f = field{}
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return errNotAll
	}
	type plain field // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*f = field(p)
	return nil
}
