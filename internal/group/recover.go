package group

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// PeersFile is the file -recover reads in the data dir: a JSON array of
// {"id","address","non_voter"}, raft's peers.json format.
const PeersFile = "peers.json"

// recoverFromPeersJSON forces the configuration in peers.json onto this
// node's raft state, keeping every entry it has (raft.RecoverCluster): the
// way back from losing a majority for good. Every surviving node gets the
// same file; they then elect among themselves.
func (s *Group) recoverFromPeersJSON(rc *raft.Config, snaps raft.SnapshotStore, trans raft.Transport, hasState bool) error {
	path := filepath.Join(s.cfg.DataDir, PeersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		s.logger.Info("-recover given but there is no peers.json: starting normally", "path", path)
		return nil
	}
	if !hasState {
		return fmt.Errorf("raftstore: recover: %s has no raft state to recover", s.cfg.DataDir)
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("raftstore: recover: read %s: %w", path, err)
	}
	if !inConfig(conf, s.id) {
		return fmt.Errorf("raftstore: recover: %s does not list this node (%s)", path, s.id)
	}
	s.logger.Warn("recovering: replacing the raft configuration", "peers", fmt.Sprintf("%+v", conf.Servers))
	if err := raft.RecoverCluster(rc, s.fsm, s.logs, s.logStore, snaps, trans, conf); err != nil {
		return fmt.Errorf("raftstore: recover: %w", err)
	}
	if err := os.Rename(path, path+".applied"); err != nil {
		return fmt.Errorf("raftstore: recover: %w", err)
	}
	s.logger.Warn("recovered: the configuration now holds only the peers.json members", "applied_index", s.fsm.AppliedIndex())
	return nil
}
