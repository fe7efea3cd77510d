package group

// AuthGeneration changes with the membership and the ACL state, on which
// peer authentication depends (a restore sets both to the snapshot's).
func (g *Group) AuthGeneration() [2]uint64 {
	return [2]uint64{g.fsm.ConfigIndex(), g.fsm.ACLIndex()}
}
