"""Infrastructure shared by every domain: database, logging, scheduler."""
