package store

import (
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no final
// xor), the checksum Redis Cluster hashes keys with, continued from crc.
func crc16(crc uint16, b []byte) uint16 {
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is a key's Cluster slot: the CRC of its hash tag (what lies
// between the first '{' and the next '}', when not empty) or of the whole
// key, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(0, []byte(key)) % clusterSlots)
}

// slotTags holds, for every slot, a short string (base 36, at most four
// characters) that hashes to it: the hash tag of that slot's reconcile
// index. Computed once, on first use (about 170,000 CRCs).
var slotTags = sync.OnceValue(func() *[clusterSlots]string {
	var tags [clusterSlots]string
	for i, left := 0, clusterSlots; left > 0; i++ {
		t := strconv.FormatInt(int64(i), 36)
		if s := crc16(0, []byte(t)) % clusterSlots; tags[s] == "" {
			tags[s] = t
			left--
		}
	}
	return &tags
})

// isCluster tells whether the store runs on a Redis Cluster.
func (s *Store) isCluster() bool {
	_, ok := s.c.(*redis.ClusterClient)
	return ok
}

// reconcileIndexKey is the key of the reconcile index that files the
// record at recordKey: on a Cluster "<prefix>:rx:{<tag>}" with the tag of
// the record's slot, so that every script on a record touches one slot;
// standalone and Sentinel one key "<prefix>:rx". Neither starts with
// "<prefix>:{", so no SCAN of records sees them.
func (s *Store) reconcileIndexKey(recordKey string) string {
	if !s.isCluster() {
		return s.opt.Prefix + ":rx"
	}
	return s.slotIndexKey(keySlot(recordKey))
}

// slotIndexKey is the Cluster reconcile index of slot.
func (s *Store) slotIndexKey(slot int) string {
	return s.opt.Prefix + ":rx:{" + slotTags()[slot] + "}"
}
