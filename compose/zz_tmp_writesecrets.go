package compose

// TEMPORARY stand-in for WriteSecrets (wt-compose); removed at merge.
func WriteSecrets(p *Project, opts SecretOptions) error { return nil }
