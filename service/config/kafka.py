"""The ``kafka`` section: connection, security and client properties, exported as librdkafka
properties."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from service.config.base import ClientConfig, Section, is_secret_property


class KafkaSettings(Section):
    """Connection to the brokers; exported as librdkafka properties."""

    bootstrap_servers: str = Field(
        "localhost:9092", description="comma-separated host:port list of the Kafka brokers"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(None, description="librdkafka sasl.mechanism (required with SASL_*)")
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_ca_location: Path | None = Field(None, description="CA certificate file (PEM)")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM)")
    ssl_key_location: Path | None = Field(None, description="client private key (PEM)")
    ssl_key_password: SecretStr | None = Field(None, description="password of the private key")
    unavailable_timeout_s: float = Field(
        120.0,
        gt=0,
        description="how long a command waits for a Kafka broker, with a log line every 15 s: "
        "at start, when none has answered yet, it gives up with exit status 2 (after 10 s "
        "when every bootstrap address refuses connections); when brokers that answered are "
        "gone this long, the service drains what it can and exits with status 3 (/readyz "
        "fails at once, /healthz does not)",
    )
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="further librdkafka properties for every client, passed through verbatim, "
        'e.g. {"socket.keepalive.enable": "true"}',
    )
    consumer: dict[str, str] = Field(
        default_factory=dict,
        description='librdkafka properties for the consumer only, e.g. {"session.timeout.ms": '
        '"45000"}',
    )
    producer: dict[str, str] = Field(
        default_factory=dict,
        description='librdkafka properties for the producer only, e.g. {"linger.ms": "20"}',
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username/password")
        return self

    def librdkafka(self) -> ClientConfig:
        """The client properties, secrets included (pass to confluent-kafka only)."""
        conf: ClientConfig = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional: dict[str, str | Path | SecretStr | None] = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        for key, value in optional.items():
            if isinstance(value, SecretStr):
                conf[key] = value.get_secret_value()
            elif value is not None:
                conf[key] = str(value)
        conf.update(self.extra)
        return conf

    def secret_values(self) -> set[str]:
        """Every secret among these settings: the SASL and key passwords and the values of
        secret-named properties (:func:`is_secret_property`) in extra, consumer and producer."""
        values = {s.get_secret_value() for s in (self.sasl_password, self.ssl_key_password) if s}
        for properties in (self.extra, self.consumer, self.producer):
            values.update(v for k, v in properties.items() if is_secret_property(k) and v)
        return values
